#!/usr/bin/env node
// TimescaleDB for tests: PGlite (PostgreSQL 17 + TimescaleDB compiled to WASM)
// served over the PostgreSQL wire protocol on a TCP port, so asyncpg and
// SQLAlchemy can talk to it like to a real server.
//
//   node server.mjs [--port 0] [--host 127.0.0.1] [--data-dir DIR]
//
// Prints exactly one line "READY <host> <port>" on stdout once it accepts
// connections; everything else goes to stderr.
//
// PGlite is ONE single-user backend session. Every client connection is
// multiplexed onto it, which is why this file exists instead of the stock
// pglite-socket server:
//   - startup/SSL/cancel handshakes are answered here, never by the engine;
//   - one client owns the session from its first message until ReadyForQuery
//     reports idle, so transactions and extended-protocol sequences of
//     different clients never interleave;
//   - prepared statement names are prefixed per client (asyncpg names them
//     __asyncpg_stmt_N__ per connection, so two connections would collide);
//   - the session is cleaned when a client vanishes or the last one leaves.
// Consequences: clients are serialized (no real concurrency), and a client
// that holds a transaction open while waiting for ANOTHER connection of the
// same process deadlocks (that other connection waits for the session).
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { timescaledb } from '@electric-sql/pglite/timescaledb';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'data-dir': { type: 'string' },
    // Seconds a client may wait while another one holds the session idle in
    // a transaction; then the waiter is disconnected with an error instead of
    // hanging forever (a test awaiting a second connection while the first
    // is in a transaction deadlocks otherwise). 0 waits forever.
    'wait-timeout': { type: 'string', default: '30' },
  },
});

// TSENGINE_TRACE=1 logs every message and ownership change to stderr.
const trace = process.env.TSENGINE_TRACE ? (...a) => console.error('tsengine:', ...a) : () => {};

const fail = (msg, code = 1) => {
  process.stderr.write(`tsengine: ${msg}\n`);
  process.exit(code);
};

// ---------------------------------------------------------------- protocol

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

function message(type, ...parts) {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (s) => Buffer.from(`${s}\0`, 'utf8');
const int16 = (n) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const query = (sql) => message('Q', cstr(sql));
const errorResponse = (code, text, severity = 'ERROR') =>
  message('E', cstr(`S${severity}`), cstr(`V${severity}`), cstr(`C${code}`), cstr(`M${text}`), Buffer.from([0]));

// Reads a NUL-terminated string at `off`; returns [string, offset after NUL].
function readCstr(buf, off) {
  const end = buf.indexOf(0, off);
  return [buf.toString('utf8', off, end), end + 1];
}

// Walks backend messages. status: the last ReadyForQuery's byte ('I' idle,
// 'T' in transaction, 'E' failed transaction), or null when there is none
// (e.g. Parse/Bind before Sync). error: whether an ErrorResponse was seen.
function scan(out) {
  let status = null;
  let error = false;
  for (let off = 0; off + 5 <= out.length; off += 1 + out.readInt32BE(off + 1)) {
    if (out[off] === 0x5a /* Z */) status = String.fromCharCode(out[off + 5]);
    if (out[off] === 0x45 /* E */) error = true;
  }
  return { status, error };
}

// Messages that touch nothing but the sender's own prepared statements.
const harmless = (msg) =>
  msg[0] === 0x50 /* P */ || msg[0] === 0x48 /* H */ ||
  ((msg[0] === 0x44 /* D */ || msg[0] === 0x43 /* C */) && msg[5] === 0x53 /* S */);

// ------------------------------------------------------------------ engine

// PGlite boots with client_min_messages=debug3 (a NoticeResponse for every
// statement), enable_seqscan=off and a non-standard search_path/TimeZone.
// These are re-applied after DISCARD ALL / RESET ALL, which would otherwise
// bring the boot values back.
const SESSION_DEFAULTS = [
  'SET client_min_messages TO notice',
  'SET enable_seqscan TO on',
  'SET search_path TO "$user", public',
  "SET TimeZone TO 'UTC'",
].join('; ');

// COPY ... FROM STDIN (PostgreSQL also accepts FROM STDOUT for it) traps the
// WASM engine ("RuntimeError: unreachable"), which is then dead. Such
// statements are replaced by one that fails cleanly inside the engine, so the
// client gets a normal ErrorResponse (SQLSTATE 0A000) and the transaction
// state is what PostgreSQL would have.
const COPY_FROM_STDIN = /(^|;)\s*(--[^\n]*\n\s*|\/\*[\s\S]*?\*\/\s*)*copy\b[^;]*?\bfrom\s+std(in|out)\b/i;
const COPY_REPLACEMENT =
  "DO $$BEGIN RAISE EXCEPTION 'COPY FROM STDIN is not supported by the test TimescaleDB engine' " +
  "USING ERRCODE = 'feature_not_supported'; END$$";
const RESETS_SESSION = /\b(discard|reset)\s+all\b/i;

let db = null;
let ready = false; // boot finished: clients may use the engine
let serverVersion = '17';

// Runs raw protocol bytes on the engine. The result is a view into a buffer
// PGlite reuses on the next call, so it is copied right away.
async function run(bytes) {
  return Buffer.from(await db.execProtocolRaw(bytes));
}

// Runs statements of our own; their output is not meant for any client.
async function runInternal(sql) {
  const out = await run(query(sql));
  if (out.includes(Buffer.from('SERROR\0'))) process.stderr.write(`tsengine: internal statement failed: ${sql}\n`);
  return out;
}

async function boot() {
  let dataDir;
  if (args['data-dir']) {
    dataDir = path.resolve(args['data-dir']);
    fs.mkdirSync(dataDir, { recursive: true });
  }
  // The timescaledb extension ships as a tarball inside the package; listing
  // it here unpacks it into the engine so CREATE EXTENSION timescaledb works.
  db = await PGlite.create({ dataDir, extensions: { timescaledb } });
  await runInternal(SESSION_DEFAULTS);
  // asyncpg parses server_version (from ParameterStatus) to pick features.
  serverVersion = (await db.query('SHOW server_version')).rows[0].server_version;
  ready = true;
}

// ----------------------------------------------------------------- clients

const clients = new Set();
const departed = []; // clients whose prepared statements are still to close
const waiting = []; // clients with queued messages, in arrival order
let owner = null; // client owning the session until ReadyForQuery 'I'
let pumping = false;
let cleanAfterLastClient = false;
let stallTimer = null;
let nextId = 1;

class Client {
  constructor(socket) {
    this.id = nextId++;
    this.socket = socket;
    this.started = false; // startup packet seen
    this.gone = false;
    this.queue = [];
    this.pending = []; // incoming chunks not yet split into messages
    this.pendingLength = 0;
    this.needed = 0; // bytes needed before the next message is complete
    // Per-client namespace for prepared statements; short, because names
    // longer than 63 bytes are truncated by PostgreSQL.
    this.prefix = `${this.id.toString(36)}.`;
    this.statements = new Set();
    this.clean = true; // only harmless() messages since it became owner
    this.closing = false; // Terminate received
    this.inFlight = false; // one of its messages is running in the engine
    this.served = 0;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', () => this.drop());
    socket.on('close', () => this.drop());
  }

  send(buf) {
    if (!this.gone && buf.length) this.socket.write(buf);
  }

  // Splits the byte stream into messages; chunks are only joined once a
  // whole message is there, so multi-megabyte parameters stay cheap.
  onData(chunk) {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    if (this.pendingLength < this.needed) return;
    const buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    let off = 0;
    while (!this.gone && !this.closing) {
      const left = buf.length - off;
      // Startup-phase packets have no type byte: int32 length, int32 code.
      const header = this.started ? 5 : 4;
      if (left < header) { this.needed = header; break; }
      const size = this.started ? 1 + buf.readInt32BE(off + 1) : buf.readInt32BE(off);
      if (left < size) { this.needed = size; break; }
      const msg = buf.subarray(off, off + size);
      off += size;
      if (this.started) this.onMessage(msg);
      else this.onStartup(msg);
    }
    const rest = buf.subarray(off);
    this.pending = rest.length ? [rest] : [];
    this.pendingLength = rest.length;
    if (!rest.length) this.needed = 0;
  }

  onStartup(msg) {
    const code = msg.length >= 8 ? msg.readInt32BE(4) : 0;
    // asyncpg's default sslmode=prefer sends SSLRequest first and hangs if it
    // gets no answer; 'N' means "no SSL, continue in plain text".
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) return void this.socket.write('N');
    // Nothing can be cancelled: the engine runs synchronously.
    if (code === CANCEL_REQUEST) return void this.drop();
    if (code >> 16 !== 3) {
      const text = `unsupported frontend protocol ${code >> 16}.${code & 0xffff}`;
      return void this.drop(errorResponse('08P01', text, 'FATAL'));
    }
    const params = {};
    for (let off = 8; off < msg.length && msg[off] !== 0;) {
      let key, value;
      [key, off] = readCstr(msg, off);
      [value, off] = readCstr(msg, off);
      params[key] = value;
    }
    // Startup options (server_settings) are not applied: the session is
    // shared by all clients.
    this.started = true;
    const status = (k, v) => message('S', cstr(k), cstr(v));
    // Only protocol 3.0 is spoken; a client asking for 3.x or for protocol
    // options is told so, as PostgreSQL does.
    const options = Object.keys(params).filter((k) => k.startsWith('_pq_.'));
    const negotiate = (code & 0xffff) || options.length
      ? [message('v', int32(196608), int32(options.length), ...options.map(cstr))]
      : [];
    this.socket.write(Buffer.concat([
      ...negotiate,
      message('R', int32(0)), // AuthenticationOk: no password
      status('server_version', serverVersion),
      status('server_encoding', 'UTF8'),
      status('client_encoding', 'UTF8'),
      status('DateStyle', 'ISO, MDY'),
      status('IntervalStyle', 'postgres'),
      status('integer_datetimes', 'on'),
      status('TimeZone', 'UTC'),
      status('standard_conforming_strings', 'on'),
      status('is_superuser', 'on'),
      status('session_authorization', params.user || 'postgres'),
      status('application_name', params.application_name || ''),
      message('K', int32(this.id), int32((Math.random() * 0x7fffffff) | 0)),
      message('Z', Buffer.from('I')),
    ]));
  }

  onMessage(msg) {
    const type = String.fromCharCode(msg[0]);
    // Terminate: close the socket, or close()/dispose() hang. Messages queued
    // before it still run first.
    if (type === 'X') {
      this.closing = true;
      if (!this.queue.length && !this.inFlight) this.drop();
      return;
    }
    // Stray COPY data: no COPY FROM STDIN can be in progress (see above).
    if (type === 'd' || type === 'c' || type === 'f') return;
    this.queue.push(msg);
    if (this.queue.length === 1 && owner !== this) waiting.push(this);
    pump();
  }

  // Forgets the client and closes its socket once pending output (and
  // `last`, a final message) is flushed.
  drop(last) {
    if (this.gone) return;
    this.gone = true;
    this.queue = [];
    this.socket.end(last);
    setTimeout(() => this.socket.destroy(), 1000).unref();
    clients.delete(this);
    departed.push(this); // its prepared statements are closed once idle
    if (clients.size === 0) cleanAfterLastClient = true;
    pump();
  }

  // Rewrites one frontend message before it reaches the engine.
  rewrite(msg) {
    const type = String.fromCharCode(msg[0]);
    const own = (name) => this.prefix + name;
    if (type === 'Q') {
      const [sql] = readCstr(msg, 5);
      if (COPY_FROM_STDIN.test(sql)) return { msgs: [query(COPY_REPLACEMENT)] };
      return { msgs: [msg], resets: RESETS_SESSION.test(sql) };
    }
    if (type === 'P') {
      let [name, off] = readCstr(msg, 5);
      let sql;
      [sql, off] = readCstr(msg, off);
      let rest = msg.subarray(off);
      if (COPY_FROM_STDIN.test(sql)) { sql = COPY_REPLACEMENT; rest = int16(0); }
      const msgs = [];
      // The unnamed statement becomes a named one too (another client could
      // replace it between this client's Parse and Bind); like the real
      // unnamed statement it is replaced on every Parse, hence the Close.
      if (name === '') msgs.push(message('C', Buffer.from('S'), cstr(own(''))));
      else this.statements.add(own(name));
      msgs.push(message('P', cstr(own(name)), cstr(sql), rest));
      return { msgs, silent: msgs.length - 1 };
    }
    if (type === 'B') {
      const [portal, off] = readCstr(msg, 5);
      const [stmt, rest] = readCstr(msg, off);
      return { msgs: [message('B', cstr(portal), cstr(own(stmt)), msg.subarray(rest))] };
    }
    if ((type === 'D' || type === 'C') && msg[5] === 0x53 /* 'S' */) {
      const [stmt] = readCstr(msg, 6);
      if (type === 'C') this.statements.delete(own(stmt));
      return { msgs: [message(type, Buffer.from('S'), cstr(own(stmt)))] };
    }
    return { msgs: [msg] };
  }
}

// A client vanished while owning the session: undo its transaction.
// ROLLBACK covers explicit and implicit (extended protocol) transactions;
// after an extended-protocol error the engine ignores everything until Sync,
// hence Sync and a second ROLLBACK.
async function releaseAbandoned() {
  await run(query('ROLLBACK'));
  await run(message('S'));
  await run(query('ROLLBACK'));
}

// Closes a departed client's prepared statements (the session is idle here).
async function forgetStatements(client) {
  if (!client.statements.size) return;
  const closes = [...client.statements].map((name) => message('C', Buffer.from('S'), cstr(name)));
  client.statements.clear();
  await run(Buffer.concat([...closes, message('S')]));
}

// The single worker that feeds the engine; everything touching the engine
// goes through here, so no two messages ever run concurrently.
async function pump() {
  if (pumping || !ready) return;
  pumping = true;
  try {
    for (;;) {
      if (owner && owner.gone) {
        await releaseAbandoned();
        await forgetStatements(owner);
        owner = null;
        continue;
      }
      if (!owner) {
        // A second process reconnecting must find a fresh session:
        // asyncpg would otherwise hit 'prepared statement ... already exists'
        // for names a previous process left behind, and SET values leak.
        if (cleanAfterLastClient) {
          cleanAfterLastClient = false;
          departed.length = 0; // DISCARD ALL drops every prepared statement
          await runInternal('ROLLBACK');
          await runInternal('DISCARD ALL'); // refuses to run in a multi-statement query
          await runInternal(SESSION_DEFAULTS);
        }
        for (const c of departed.splice(0)) await forgetStatements(c);
        while (waiting.length && (waiting[0].gone || !waiting[0].queue.length)) waiting.shift();
        owner = waiting.shift() ?? null;
        if (!owner) break;
        owner.clean = true;
      }
      const client = owner;
      const msg = client.queue.shift();
      if (!msg) {
        // asyncpg prepares with Parse/Describe/Flush and sends no Sync until
        // it executes; such a client need not keep others waiting meanwhile.
        if (client.clean) { owner = null; continue; }
        break; // mid-transaction, nothing queued yet
      }
      client.served++;
      if (!harmless(msg)) client.clean = false;
      const { msgs, silent = 0, resets = false } = client.rewrite(msg);
      trace(`client ${client.id} ->`, msgs.map((m) => String.fromCharCode(m[0])).join(''));
      let out;
      client.inFlight = true;
      for (let i = 0; i < msgs.length; i++) {
        out = await run(msgs[i]);
        if (i < silent) out = null; // output of injected messages is ours
      }
      client.inFlight = false;
      client.send(out);
      const { status, error } = scan(out);
      if (error) client.clean = false; // e.g. in "ignore until Sync" mode now
      trace(`client ${client.id} <- ${out.length} bytes, ready=${status}`);
      if (resets && status !== 'E') await runInternal(SESSION_DEFAULTS);
      if (client.closing && !client.queue.length) client.drop();
      else if (status === 'I') {
        owner = null;
        if (client.queue.length) waiting.push(client);
      }
    }
  } catch (err) {
    // A WASM trap leaves the engine unusable: fail loudly instead of hanging.
    fail(`engine failure: ${err?.stack ?? err}`, 70);
  } finally {
    pumping = false;
  }
  watchStall();
}

// Called when the owner sits idle in a transaction: if it stays so for
// --wait-timeout seconds while others wait, the waiters get a FATAL error.
function watchStall() {
  const limit = Number(args['wait-timeout']) * 1000;
  if (stallTimer || !limit || !owner || pumping || owner.queue.length) return;
  if (!waiting.some((c) => !c.gone && c.queue.length)) return;
  const stalled = owner;
  const served = stalled.served;
  stallTimer = setTimeout(() => {
    stallTimer = null;
    if (owner !== stalled || stalled.served !== served) return void watchStall();
    const text = `waited ${args['wait-timeout']} s for the engine's single session, which connection ` +
      `${stalled.id} holds idle in a transaction (the test engine runs one transaction at a time)`;
    for (const c of waiting.splice(0)) {
      c.drop(errorResponse('55P03', text, 'FATAL'));
    }
  }, limit);
  stallTimer.unref();
}

// ------------------------------------------------------------------- main

// Connections made during boot wait, paused, until the engine is ready.
const server = net.createServer({ pauseOnConnect: true }, (socket) => {
  clients.add(new Client(socket));
  if (ready) socket.resume();
});

// Listen before the (slow) engine boot so a taken port fails fast.
await new Promise((resolve) => {
  server.once('error', (err) => {
    fail(err.code === 'EADDRINUSE' ? `port ${args.port} on ${args.host} is already in use` : err.message);
  });
  server.listen(Number(args.port), args.host, resolve);
});

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  server.close();
  for (const c of clients) c.socket.destroy();
  // A data directory deserves a clean shutdown; memory does not.
  if (db && args['data-dir']) {
    await Promise.race([db.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// Never outlive the parent: it holds our stdin pipe open and we exit when it
// closes. Only for a pipe/socket, so `node server.mjs < /dev/null` still runs.
try {
  const stdin = fs.fstatSync(0);
  if (stdin.isFIFO() || stdin.isSocket()) {
    process.stdin.on('end', shutdown);
    process.stdin.on('close', shutdown);
    process.stdin.resume();
  }
} catch { /* no stdin at all */ }

try {
  await boot();
} catch (err) {
  fail(`engine failed to start: ${err?.stack ?? err}`);
}
for (const c of clients) c.socket.resume();
pump(); // in case clients came and went during boot
const { address, port } = server.address();
process.stdout.write(`READY ${address} ${port}\n`);
