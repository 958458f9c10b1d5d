'use strict'
// The load of ./bin/benchmark: autocannon driven from code, as the original challenge's tool did.
//
//   node runner.js '{"url": "http://127.0.0.1:9000", "connections": 25, "duration": 45}'
//
// With "rate": R, autocannon's overallRate offers R requests/s in total instead of as many as the
// connections allow: each connection gets its share of R per second (autocannon sends a
// connection's share back to back, then pauses it until its next second), and fewer connections
// than R are used when R is smaller.
//
// POST /users with a new sign-up body on every request, pipelining 1, a 10 s request timeout. A
// progress line goes to stderr every second; when the run ends, one JSON object with the figures
// goes to stdout. The Python side (benchmark/load/runner.py) owns everything else: the health
// check, the flush, the tables and the database check.
//
// Why the body is made in getRequestBuffer rather than autocannon's setupRequest hook: with
// setupRequest, autocannon rebuilds every request through its generic builder (header objects,
// three Buffer allocations and a concat), which costs about twice the CPU of a fixed request and
// made the load generator the first thing to saturate on a 2-core machine. Writing the head and
// the fresh body as one string costs within ~15% of a fixed body (measured with a stub server;
// `node benchmark/load/loadgen-check.js` measures it). autocannon is pinned in package-lock.json,
// and getRequestBuffer is checked at start so a version that drops it fails loudly.
//
// Latency percentiles come from our own histogram in microseconds: autocannon's records whole
// milliseconds, which flattens everything under a few ms (where a good service lives at 25
// connections) to 0, 1 or 2.

const autocannon = require('autocannon')
const hdr = require('hdr-histogram-js')
const { makeUser } = require('./signup')

function main () {
  const config = JSON.parse(process.argv[2] || '{}')
  const url = new URL('/users', config.url).toString()
  const connections = config.connections
  const duration = config.duration
  const timeout = config.timeout || 10
  const rate = config.rate || 0

  const latencyUs = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: (timeout + 5) * 1e6,
    numberOfSignificantValueDigits: 3,
    autoResize: true
  })
  const counts = { ok: 0, non2xx: 0, errors: 0, timeouts: 0 }
  const codes = {}
  const cpuStart = process.cpuUsage()
  const started = process.hrtime.bigint()

  const instance = autocannon({
    url,
    connections,
    duration,
    timeout,
    pipelining: 1,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(makeUser()),
    setupClient: freshBodies(new URL(url)),
    ...(rate ? { overallRate: rate } : {})
  }, (error, result) => {
    clearInterval(progress)
    showProgress(true)
    if (error) {
      process.stderr.write(`load generator failed: ${error.message}\n`)
      process.exit(1)
    }
    const cpu = process.cpuUsage(cpuStart)
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9
    const pct = (p) => latencyUs.totalCount ? latencyUs.getValueAtPercentile(p) / 1000 : null
    process.stdout.write(JSON.stringify({
      connections,
      rate: rate || null,
      duration: result.duration,
      sent: result.requests.sent,
      ok: result['2xx'],
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      resets: result.resets,
      statusCodes: Object.fromEntries(
        Object.entries(result.statusCodeStats).map(([code, stat]) => [code, stat.count])),
      requestsPerSecond: result.requests.average,
      latencyMs: {
        p50: pct(50),
        p90: pct(90),
        p99: pct(99),
        max: latencyUs.totalCount ? latencyUs.maxValue / 1000 : null,
        mean: latencyUs.totalCount ? latencyUs.mean / 1000 : null
      },
      loadGeneratorCpuSeconds: (cpu.user + cpu.system) / 1e6,
      elapsed,
      autocannon: require('autocannon/package.json').version,
      node: process.version
    }) + '\n')
  })

  instance.on('response', (client, statusCode, bytes, responseTime) => {
    latencyUs.recordValue(Math.max(1, Math.round(responseTime * 1000)))
    if (statusCode >= 200 && statusCode < 300) counts.ok++
    else {
      counts.non2xx++
      codes[statusCode] = (codes[statusCode] || 0) + 1
    }
  })
  instance.on('reqError', (error) => {
    counts.errors++
    if (error && error.message === 'request timed out') counts.timeouts++
  })

  // Ctrl-C ends the run early but still reports what was measured.
  process.once('SIGINT', () => instance.stop())
  process.once('SIGTERM', () => instance.stop())

  const live = process.stderr.isTTY
  let lastOk = 0
  let lastAt = Date.now()
  function showProgress (final) {
    const now = Date.now()
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9
    const rate = ((counts.ok + counts.non2xx - lastOk) * 1000) / Math.max(1, now - lastAt)
    lastOk = counts.ok + counts.non2xx
    lastAt = now
    const codesText = Object.keys(codes).length
      ? ' (' + Object.entries(codes).map(([c, n]) => `${c}: ${n}`).join(', ') + ')'
      : ''
    const line = `${elapsed.toFixed(0).padStart(4)}s/${duration}s  ` +
      `responses ${String(counts.ok + counts.non2xx).padStart(8)}  ` +
      `2xx ${String(counts.ok).padStart(8)}  non-2xx ${counts.non2xx}${codesText}  ` +
      `errors ${counts.errors}  timeouts ${counts.timeouts}  ` +
      (final ? '' : `now ${rate.toFixed(0)} req/s`)
    if (live) process.stderr.write(`\r\x1b[K${line}${final ? '\n' : ''}`)
    else if (!final) process.stderr.write(line + '\n')
  }
  const progress = setInterval(() => showProgress(false), 1000)
}

// Every request a client sends is built here: the same head, a new body.
function freshBodies (target) {
  const head = `POST ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\n` +
    'Connection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: '
  return (client) => {
    if (typeof client.getRequestBuffer !== 'function') {
      throw new Error('this autocannon has no Client.getRequestBuffer: pin the version in package-lock.json')
    }
    client.getRequestBuffer = () => {
      const body = JSON.stringify(makeUser())
      return head + Buffer.byteLength(body) + '\r\n\r\n' + body
    }
  }
}

module.exports = { freshBodies }

if (require.main === module) main()
