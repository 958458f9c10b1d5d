'use strict'
// REFERENCE, NOT SQUAD: the idiomatic Node answer to the same problem, for the benchmark's
// comparison (squad must answer at least 1.6x its requests/s on the same database).
//
// express with the official mongodb driver: insert the user, answer 201 at once, then run the
// slow step fire-and-forget with setTimeout (a random 5 to 15 s) and mark the user processed.
// One process, as a plain `node server.js` deployment runs; with WORKERS=N (the sweep's
// reference-node-cluster: one per CPU), N processes on one port through node's cluster module,
// the primary only starting them and stopping them all when one dies or on SIGTERM/SIGINT.
// Its own database (squad_reference), no password stored (no plaintext anywhere, as squad), no
// request logging.
//
//   PORT=9300 MONGO_URI=mongodb://127.0.0.1:27017 node benchmark/servers/reference-node/server.js
//   WORKERS=2 PORT=9301 node benchmark/servers/reference-node/server.js
//
// GET /health and DELETE /collections answer 204, as squad's do.

const cluster = require('node:cluster')
const express = require('express')
const { MongoClient } = require('mongodb')

const port = Number(process.env.PORT || 9300)
const uri = process.env.MONGO_URI || 'mongodb://127.0.0.1:27017'
const databaseName = process.env.DATABASE || 'squad_reference'
const slowMin = Number(process.env.SLOW_MIN || 5)
const slowMax = Number(process.env.SLOW_MAX || 15)
const workers = Math.max(1, Number(process.env.WORKERS || 1))
const FIELDS = ['firstName', 'lastName', 'email', 'username', 'password']

async function main () {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 })
  await client.connect()
  const users = client.db(databaseName).collection('users')

  const app = express()
  app.disable('x-powered-by')
  app.use(express.json({ limit: '16kb' }))

  app.get('/health', (req, res) => res.status(204).end())

  app.delete('/collections', async (req, res, next) => {
    try {
      // A drop, as squad's own flush: FerretDB deletes a whole collection with one
      // `IN (...)` of every id, which SQLite refuses past 32,766 documents.
      await users.drop().catch((error) => { if (error.code !== 26) throw error })
      res.status(204).end()
    } catch (error) {
      next(error)
    }
  })

  app.post('/users', async (req, res, next) => {
    const body = req.body
    if (!body || typeof body !== 'object' || !FIELDS.every((f) => typeof body[f] === 'string')) {
      return res.status(400).json({ error: 'invalid_body', message: 'Send the five string fields.' })
    }
    const now = new Date()
    const user = {
      firstName: body.firstName,
      lastName: body.lastName,
      email: body.email,
      username: body.username,
      processed: false,
      date_created: now,
      date_updated: now
    }
    try {
      await users.insertOne(user)
    } catch (error) {
      return next(error)
    }
    res.status(201).location(`/users/${user._id}`).json(user)
    // The slow step, fire-and-forget: nothing waits for it, and nothing takes it over if the
    // process dies (the weakness squad's durable slow work addresses).
    setTimeout(() => {
      users.updateOne({ _id: user._id }, { $set: { processed: true, date_updated: new Date() } })
        .catch((error) => console.error('slow step failed:', error.message))
    }, (slowMin + Math.random() * (slowMax - slowMin)) * 1000)
  })

  const server = app.listen(port, '127.0.0.1', () => {
    console.log(`reference-node listening on 127.0.0.1:${port}`)
  })
  const stop = () => server.close(() => client.close().then(() => process.exit(0)))
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

function supervise () {
  let stopping = false
  const stopAll = (code) => {
    stopping = true
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM')
    process.exitCode = code
  }
  for (let i = 0; i < workers; i++) cluster.fork()
  cluster.on('exit', (worker, code, signal) => {
    // A reference, not a product, does not limp on with fewer processes than it says.
    if (!stopping) {
      console.error(`reference-node worker ${worker.process.pid} exited (${signal || code})`)
      stopAll(1)
    }
  })
  process.once('SIGTERM', () => stopAll(0))
  process.once('SIGINT', () => stopAll(0))
}

if (workers > 1 && cluster.isPrimary) {
  console.log(`reference-node starting ${workers} processes on 127.0.0.1:${port}`)
  supervise()
} else {
  main().catch((error) => {
    console.error(`reference-node could not start: ${error.message}`)
    process.exit(1)
  })
}
