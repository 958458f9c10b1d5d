'use strict'
// Is the load generator fast enough?
//   node benchmark/load/loadgen-check.js [seconds] [connections]
//
// Starts a trivial Node HTTP server in a child process (it answers 201 to anything, so it is far
// cheaper per request than any real target) and loads it three ways, printing for each the
// requests/s reached and the load generator's own CPU time per request:
//   fixed body     one body for every request: autocannon's cheapest case, the floor;
//   setupRequest   a new body per request through autocannon's setupRequest hook;
//   runner.js      a new body per request the way ./bin/benchmark makes it.
// The last figure tells how many requests/s one core of load generation can drive; a target that
// answers far fewer than that, with the generator well under 100% of a core (./bin/benchmark
// prints it after every run), is measured, not the generator.

const { spawn } = require('child_process')
const autocannon = require('autocannon')
const { makeUser } = require('./signup')
const { freshBodies } = require('./runner')

const seconds = Number(process.argv[2] || 5)
const connections = Number(process.argv[3] || 50)

const SERVER = `
const http = require('http')
const server = http.createServer((req, res) => {
  req.on('data', () => {})
  req.on('end', () => { res.statusCode = 201; res.end('{"ok":true}') })
})
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'))
`

function load (url, options) {
  return new Promise((resolve, reject) => {
    const cpu = process.cpuUsage()
    autocannon({ url, connections, duration: seconds, pipelining: 1, method: 'POST', ...options },
      (error, result) => {
        if (error) return reject(error)
        const used = process.cpuUsage(cpu)
        const total = result['2xx'] + result.non2xx
        resolve({
          rps: result.requests.average,
          usPerRequest: total ? (used.user + used.system) / total : NaN,
          cpuPercent: (100 * (used.user + used.system)) / 1e6 / result.duration
        })
      })
  })
}

async function main () {
  const server = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(Number(d))))
  const url = `http://127.0.0.1:${port}/users`
  const headers = { 'content-type': 'application/json' }
  const variants = [
    ['fixed body', { headers, body: JSON.stringify(makeUser()) }],
    ['setupRequest', {
      headers,
      requests: [{
        method: 'POST',
        path: '/users',
        headers,
        setupRequest: (request) => { request.body = JSON.stringify(makeUser()); return request }
      }]
    }],
    ['runner.js', { headers, body: '{}', setupClient: freshBodies(new URL(url)) }]
  ]
  console.log(`${connections} connections, ${seconds}s each, against a stub server (node ${process.version})`)
  try {
    for (const [name, options] of variants) {
      const figures = await load(url, options)
      console.log(
        `${name.padEnd(14)} ${figures.rps.toFixed(0).padStart(7)} req/s   ` +
        `${figures.usPerRequest.toFixed(1).padStart(6)} µs of generator CPU per request   ` +
        `generator at ${figures.cpuPercent.toFixed(0)}% of a core`)
    }
  } finally {
    server.kill()
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
