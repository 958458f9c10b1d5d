'use strict'
// ./bin/benchmark --original-tool: the original challenge's client, rewritten here, on the
// versions it pinned (autocannon 4.6.0, faker 4.1.0, both in this folder's package-lock.json).
//
//   node runner.js '{"url": "http://127.0.0.1:9000", "connections": 25, "duration": 45}'
//   node runner.js --bodies 5 [--seed 1]      five sign-up bodies, one JSON object a line
//
// What it does the way the original did, on purpose, because the judges run that tool:
// - POST /users with `Content-Type: application/json`, pipelining 1, a 10 s timeout;
// - autocannon starts with no body, and the next body is set in the `response` handler
//   (client.setBody after every answer). So each connection's first request goes out with the
//   content type and no body at all (no Content-Length), and is answered before any body exists;
// - on a timeout (or a closed connection) autocannon 4.6.0 reconnects and resends the request it
//   holds: the last body set, or none if the connection never had an answer.
// Beside autocannon's own figures it counts, per status, the answers to requests that went out
// without a body (a connection that had no answer yet), so the Python side can tell those apart
// from every other non-2xx. One JSON object with the figures goes to stdout when the run ends.

const faker = require('faker')

// One sign-up as the original made it: faker 4.1.0's names, the email made from those names,
// an 8-character password and an unrelated userName.
function makeBody () {
  const firstName = faker.name.firstName()
  const lastName = faker.name.lastName()
  return {
    firstName,
    lastName,
    email: faker.internet.email(firstName, lastName),
    password: faker.internet.password(8),
    username: faker.internet.userName()
  }
}

function printBodies (count, seed) {
  if (seed !== undefined) faker.seed(seed)
  const lines = []
  for (let i = 0; i < count; i++) lines.push(JSON.stringify(makeBody()))
  process.stdout.write(lines.join('\n') + '\n')
}

function bump (table, key) {
  table[key] = (table[key] || 0) + 1
}

function main (config) {
  const autocannon = require('autocannon')
  const url = new URL('/users', config.url).toString()
  const connections = config.connections
  const duration = config.duration
  const timeout = config.timeout || 10

  const statusCodes = {}
  const bodylessStatusCodes = {}
  const counts = { responses: 0, non2xx: 0, bodyless: 0, errors: 0, timeouts: 0 }
  // Clients that have had at least one answer, hence a body: every later request carries one.
  const bodied = new WeakSet()
  const clients = new Set()
  const cpuStart = process.cpuUsage()
  const started = process.hrtime.bigint()

  const instance = autocannon({
    url,
    connections,
    duration,
    timeout,
    pipelining: 1,
    method: 'POST',
    headers: { 'Content-Type': 'application/json' }
  }, (error, result) => {
    clearInterval(progress)
    showProgress(true)
    if (error) {
      process.stderr.write(`load generator failed: ${error.message}\n`)
      process.exit(1)
    }
    const cpu = process.cpuUsage(cpuStart)
    process.stdout.write(JSON.stringify({
      connections,
      duration: result.duration,
      sent: result.requests.sent,
      ok: result['2xx'],
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      statusCodes,
      bodylessStatusCodes,
      clientsAnswered: [...clients].filter((client) => bodied.has(client)).length,
      requestsPerSecond: result.requests.average,
      latencyMs: {
        p50: result.latency.p50,
        p90: result.latency.p90,
        p99: result.latency.p99,
        max: result.latency.max,
        mean: result.latency.average
      },
      loadGeneratorCpuSeconds: (cpu.user + cpu.system) / 1e6,
      elapsed: Number(process.hrtime.bigint() - started) / 1e9,
      autocannon: require('autocannon/package.json').version,
      faker: require('faker/package.json').version,
      node: process.version
    }) + '\n')
  })

  instance.on('response', (client, statusCode) => {
    counts.responses++
    clients.add(client)
    if (statusCode < 200 || statusCode >= 300) counts.non2xx++
    bump(statusCodes, statusCode)
    if (!bodied.has(client)) {
      counts.bodyless++
      bump(bodylessStatusCodes, statusCode)
      bodied.add(client)
    }
    // As the original: the next request's body is made after this answer.
    client.setBody(JSON.stringify(makeBody()))
  })
  instance.on('reqError', (error) => {
    counts.errors++
    if (error && error.message === 'request timed out') counts.timeouts++
  })

  process.once('SIGINT', () => instance.stop())
  process.once('SIGTERM', () => instance.stop())

  const live = process.stderr.isTTY
  function showProgress (final) {
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9
    const line = `${elapsed.toFixed(0).padStart(4)}s/${duration}s  ` +
      `responses ${String(counts.responses).padStart(8)}  non-2xx ${counts.non2xx} ` +
      `(bodyless ${counts.bodyless})  errors ${counts.errors}  timeouts ${counts.timeouts}`
    if (live) process.stderr.write(`\r\x1b[K${line}${final ? '\n' : ''}`)
    else if (!final) process.stderr.write(line + '\n')
  }
  const progress = setInterval(() => showProgress(false), 1000)
}

module.exports = { makeBody }

if (require.main === module) {
  const args = process.argv.slice(2)
  if (args[0] === '--bodies') {
    const seedAt = args.indexOf('--seed')
    printBodies(Number(args[1]), seedAt > 0 ? Number(args[seedAt + 1]) : undefined)
  } else {
    main(JSON.parse(args[0] || '{}'))
  }
}
