// The PostgreSQL handshake against a real PostgreSQL 15 (test/lib/postgres.ts) on this process's
// loopback, through a real ConnectListener, with node-postgres and hand-written packets as clients.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { canRunPostgres, startPostgres, type PostgresServer } from '../../../test/lib/postgres.js';
import { Cluster } from '../../cluster/cluster.js';
import type { EndpointSpec } from '../../discovery/source.js';
import { refusedPort, seeded, spec } from '../../testing/tcp-kit.js';
import { ConnectListener } from '../listener.js';
import { haveOpenssl, makeCa, type TestCa } from '../../testing/test-ca.js';
import { anyAnnouncer } from './credential-gate.js';
import { PostgresProtocol } from './postgres.js';
import {
  CANCEL_REQUEST_CODE, protocolVersion, readErrorFields, readMessage, sslRequest, startupMessage, type BackendMessage,
} from './postgres-wire.js';
import type { ProtocolOptions } from './protocol.js';

const skip = canRunPostgres() ?? (haveOpenssl ? undefined : 'openssl not installed');
const dir = mkdtempSync(join(tmpdir(), 'amb-pg-hs-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

const APP_PW = 'app-Scram-Secret-30';
const MD5_PW = 'legacy-Md5-Secret-30';
const CLEAR_PW = 'clear-Text-Secret-30';
const UNICODE_PW = 'pa\u0308ss\u00A0w\u00F6rd-30'; // SASLprep: composed, NBSP → space

let fileSeq = 0;
function authFile(content: string): string {
  const f = join(dir, `auth-${++fileSeq}`);
  writeFileSync(f, content, { mode: 0o600 });
  return f;
}

describe('PostgreSQL handshake against PostgreSQL 15', { skip }, () => {
  let server: PostgresServer;
  let ca: TestCa;

  before(async () => {
    ca = makeCa(join(dir, 'ca'), 'pg test CA');
    const leaf = ca.issue('db.test', { sans: ['db.test', '127.0.0.1'] });
    server = await startPostgres(undefined, {
      port: await refusedPort(), // free: bound once and released
      settings: { listen_addresses: '127.0.0.1' },
      tls: { cert: readFileSync(leaf.cert, 'utf8'), key: readFileSync(leaf.key, 'utf8') },
      users: [
        { name: 'app', password: APP_PW },
        { name: 'legacy', password: MD5_PW, method: 'md5' },
        { name: 'clear', password: CLEAR_PW, method: 'password' },
        { name: 'uni', password: UNICODE_PW },
      ],
      databases: [{ name: 'appdb', owner: 'app' }],
    });
  });
  after(async () => {
    await server?.stop();
  });

  /** A listener with the protocol in front of the server; `endpoints` default: the server, as --static. */
  async function proxy(t: TestContext, opts: ProtocolOptions & { endpoints?: EndpointSpec[]; source?: 'static' | 'mdns' } = {}) {
    const protocol = new PostgresProtocol({ serverCa: ca.cert, ...opts });
    await protocol.start();
    const cluster = new Cluster('pg');
    const source = opts.source ?? 'static';
    cluster.setEndpoints(source, opts.endpoints ?? [spec('pg1', server.port, { source })]);
    const listener = new ConnectListener({
      cluster, port: 0, handshake: protocol.handshake, greet: protocol.greet, errorReply: (m, c) => protocol.errorReply(m, c),
      noEndpointWaitMs: 300,
    });
    const events: string[] = [];
    listener.on('connect-failed', (_c, ep, code, phase) => events.push(`failed ${ep.id} ${code} ${phase}`));
    listener.on('upstream-connected', (_c, ep) => events.push(`connected ${ep.id}`));
    const port = (await listener.listen()).port;
    t.after(async () => {
      protocol.stop();
      await listener.close();
      cluster.close();
    });
    return { protocol, listener, port, events };
  }

  async function client(port: number, extra: pg.ClientConfig = {}): Promise<pg.Client> {
    const c = new pg.Client({ host: '127.0.0.1', port, user: 'whoever', database: 'appdb', connectionTimeoutMillis: 5000, ...extra });
    await c.connect();
    return c;
  }

  const one = async (c: pg.Client, sql: string): Promise<Record<string, unknown>> => (await c.query(sql)).rows[0] as Record<string, unknown>;

  test('SCRAM-SHA-256 over verified TLS: the client sends no password and is the file\'s user; database and application_name kept', async (t) => {
    const { port, protocol } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`) });
    const c = await client(port, { application_name: 'unit-app' });
    try {
      const r = await one(c, "select current_user as u, current_database() as d, current_setting('application_name') as a, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl");
      assert.deepEqual(r, { u: 'app', d: 'appdb', a: 'unit-app', ssl: true });
      assert.equal(protocol.cancelKeyCount, 1, 'the session\'s cancel key is known');
    } finally {
      await c.end();
    }
    assert.equal(protocol.stats.ok, 1);
  });

  test('MD5 and a SASLprep\'d Unicode password; the file\'s password alone keeps the client\'s user', async (t) => {
    const md5 = await proxy(t, { authFile: authFile(`legacy ${MD5_PW}\n`), serverTls: 'off' });
    const c = await client(md5.port, { database: 'postgres' });
    assert.deepEqual(await one(c, 'select current_user as u, (select ssl from pg_stat_ssl where pid = pg_backend_pid()) as ssl'), { u: 'legacy', ssl: false });
    await c.end();
    const uni = await proxy(t, { authFile: authFile(UNICODE_PW) });
    const u = await client(uni.port, { user: 'uni', database: 'postgres' });
    assert.equal((await one(u, 'select current_user as u')).u, 'uni');
    await u.end();
  });

  test('cleartext password: to an endpoint the operator named, or over verified TLS; never in clear to an announcer', async (t) => {
    const file = authFile(`clear ${CLEAR_PW}\n`);
    const named = await proxy(t, { authFile: file, serverTls: 'off' });
    const c = await client(named.port, { database: 'postgres' });
    assert.equal((await one(c, 'select current_user as u')).u, 'clear');
    await c.end();
    const announcedTls = await proxy(t, { authFile: file, source: 'mdns', credentialGate: anyAnnouncer });
    const d = await client(announcedTls.port, { database: 'postgres' });
    assert.equal((await one(d, 'select current_user as u')).u, 'clear');
    await d.end();
    const announcedPlain = await proxy(t, { authFile: file, source: 'mdns', credentialGate: anyAnnouncer, serverTls: 'off' });
    await assert.rejects(client(announcedPlain.port, { database: 'postgres' }), (e: Error & { code?: string }) => {
      assert.equal(e.code, '08006');
      assert.match(e.message, /^ambassador: no endpoint for 'pg' took the connection .*cleartext/);
      return true;
    });
    assert.deepEqual(announcedPlain.events, ['failed pg1 ECLEARTEXT handshake']);
  });

  test('a refused login: the client gets 28P01 in the ambassador\'s words, and no other endpoint is tried', async (t) => {
    const { port, events, protocol } = await proxy(t, {
      authFile: authFile(`app not-the-password\n`),
      endpoints: [spec('pg1', server.port), spec('pg2', server.port)],
    });
    const failed: string[] = [];
    protocol.on('handshake-failed', (_ep, code: string, message: string) => failed.push(`${code} ${message}`));
    await assert.rejects(client(port), (e: Error & { code?: string; severity?: string }) => {
      assert.equal(e.code, '28P01');
      assert.equal(e.severity, 'FATAL');
      assert.equal(e.message, 'ambassador: upstream authentication failed (28P01: password authentication failed for user "app")');
      return true;
    });
    assert.equal(events.length, 1, events.join('; '));
    assert.match(events[0]!, /^failed pg\d 28P01 handshake$/);
    assert.equal(failed.length, 1);
    assert.doesNotMatch(failed[0]!, /not-the-password/);
  });

  test('errors after AuthenticationOk are the server\'s own: a database that does not exist is its 3D000', async (t) => {
    const { port, protocol } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`) });
    await assert.rejects(client(port, { database: 'nosuchdb' }), (e: Error & { code?: string }) => {
      assert.equal(e.code, '3D000');
      assert.equal(e.message, 'database "nosuchdb" does not exist');
      return true;
    });
    assert.equal(protocol.stats.failed, 0, 'the login itself worked');
  });

  test('TLS to the server is verified: an unknown CA fails with what to do; server-verify=none does not verify', async (t) => {
    const strict = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`), serverTls: 'require', serverCa: undefined });
    await assert.rejects(client(strict.port), (e: Error & { code?: string }) => {
      assert.equal(e.code, '08006');
      assert.match(e.message, /TLS with the server failed \(UNABLE_TO_VERIFY_LEAF_SIGNATURE.*server-ca=FILE/);
      return true;
    });
    const named = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`), serverTls: 'require', serverName: 'other.test' });
    await assert.rejects(client(named.port), /ERR_TLS_CERT_ALTNAME_INVALID/);
    const lax = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`), serverTls: 'require', serverCa: undefined, serverVerify: 'none' });
    const c = await client(lax.port);
    assert.equal((await one(c, 'select ssl from pg_stat_ssl where pid = pg_backend_pid()')).ssl, true);
    await c.end();
  });

  test('no endpoint: an ErrorResponse of class 08, not a bare close', async (t) => {
    const { port } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`), endpoints: [] });
    await assert.rejects(client(port), (e: Error & { code?: string }) => {
      assert.equal(e.code, '08006');
      assert.match(e.message, /^ambassador: no endpoint for 'pg' \(waited 300 ms\)$/);
      return true;
    });
  });

  test('a CancelRequest reaches the server that issued the key and stops the query; unknown keys are dropped', async (t) => {
    const { port, protocol } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`) });
    const c = await client(port);
    try {
      const key = c as unknown as { processID: number; secretKey: number };
      // An unknown key: closed without a word, nothing cancelled.
      const stray = await rawCancel(port, key.processID, key.secretKey ^ 1);
      assert.equal(stray.length, 0);
      // (a rejection handler at once: the cancel may land before the assertion below looks)
      const sleeping = c.query('select pg_sleep(30)').then(() => undefined, (e: Error & { code?: string }) => e);
      await waitForActive(server, 'select pg_sleep(30)');
      const t0 = Date.now();
      await rawCancel(port, key.processID, key.secretKey);
      assert.equal((await sleeping)?.code, '57014', 'query_canceled');
      assert.ok(Date.now() - t0 < 5000);
      assert.equal((await one(c, 'select 1 as one')).one, 1, 'the session goes on');
    } finally {
      await c.end();
    }
    await waitUntil(() => protocol.cancelKeyCount === 0, 'the closed session\'s key forgotten');
  });

  test('without an auth file the client logs in itself; errors and cancel routing still work', async (t) => {
    const { port, protocol } = await proxy(t, {});
    const c = await client(port, { user: 'app', password: APP_PW });
    try {
      assert.equal((await one(c, 'select current_user as u')).u, 'app');
      await waitUntil(() => protocol.cancelKeyCount === 1, 'cancel key seen through the pipe');
    } finally {
      await c.end();
    }
    await assert.rejects(client(port, { user: 'app', password: 'wrong' }), (e: Error & { code?: string }) => e.code === '28P01');
  });

  test('SSLRequest and GSSENCRequest answered N; protocol 3.2 negotiated down by the server; replication and 2.0 refused', async (t) => {
    const { port } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`) });
    const gss = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    const s = await raw(port);
    s.write(Buffer.concat([gss, sslRequest()]));
    assert.equal((await s.bytes(2)).toString(), 'NN');
    s.write(startupMessage(protocolVersion(3, 2), [['user', 'x'], ['database', 'appdb'], ['_pq_.unknown_option', 'on']]));
    const first = await s.message();
    assert.equal(first.type, 'v', 'NegotiateProtocolVersion from PostgreSQL 15 reaches the client first');
    assert.equal(first.body.readInt32BE(0), protocolVersion(3, 0), 'newest version: 3.0');
    const ok = await s.message();
    assert.deepEqual([ok.type, ok.body.readInt32BE(0)], ['R', 0]);
    const types: string[] = [];
    for (let m = await s.message(); ; m = await s.message()) {
      types.push(m.type);
      if (m.type === 'Z') break;
    }
    assert.ok(types.includes('S') && types.includes('K'), types.join(''));
    s.end();

    const repl = await raw(port);
    repl.write(startupMessage(protocolVersion(3, 0), [['user', 'x'], ['replication', 'database']]));
    const e = await repl.message();
    assert.equal(e.type, 'E');
    assert.equal(readErrorFields(e.body).get('C'), '0A000');
    assert.match(readErrorFields(e.body).get('M')!, /^ambassador: replication connections are not proxied/);
    const v2 = await raw(port);
    v2.write(startupMessage(protocolVersion(2, 0), [['user', 'x']]));
    assert.equal(readErrorFields((await v2.message()).body).get('C'), '0A000');
  });

  test('the file is re-read: new connections use the new password, open ones are untouched', async (t) => {
    const file = authFile(`app ${APP_PW}\n`);
    const { port, protocol } = await proxy(t, { authFile: file });
    const open = await client(port);
    writeFileSync(file, 'app a-wrong-password\n');
    assert.equal(await protocol.reload(), true);
    await assert.rejects(client(port), (e: Error & { code?: string }) => e.code === '28P01');
    assert.equal((await one(open, 'select current_user as u')).u, 'app');
    writeFileSync(file, '\n');
    assert.equal(await protocol.reload(), false, 'an empty file is refused, the previous credentials stay');
    await open.end();
  });

  test('fuzzed startup packets: refused or closed, never a crash; the listener serves the next client', async (t) => {
    const { port, listener } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`), endpoints: [] });
    const rnd = seeded(3030);
    const valid = startupMessage(protocolVersion(3, 0), [['user', 'u'], ['database', 'appdb'], ['application_name', 'fuzz']]);
    const cases: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      let b: Buffer;
      if (i % 4 === 0) {
        b = Buffer.alloc(1 + Math.floor(rnd() * 96));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      } else {
        const base = i % 4 === 1 ? Buffer.concat([sslRequest(), valid]) : i % 4 === 2 ? cancelPacket(Math.floor(rnd() * 1e6), Math.floor(rnd() * 1e6)) : valid;
        b = Buffer.from(base.subarray(0, 1 + Math.floor(rnd() * base.length)));
        for (let k = 0; k < 1 + Math.floor(rnd() * 3); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      }
      cases.push(b);
    }
    // 20 at a time; each client sends its bytes, half-closes, and reads whatever comes until the close.
    for (let i = 0; i < cases.length; i += 20) {
      await Promise.all(cases.slice(i, i + 20).map((b) => new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => s.end(b));
        s.on('data', () => {});
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.setTimeout(3000, () => s.destroy());
      })));
    }
    await waitUntil(() => listener.connections.size === 0, 'every fuzzed client closed');
    const { port: good } = await proxy(t, { authFile: authFile(`app ${APP_PW}\n`) });
    const c = await client(good);
    assert.equal((await one(c, 'select 1 as one')).one, 1);
    await c.end();
  });
});

function cancelPacket(pid: number, secret: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32BE(16, 0);
  b.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret, 12);
  return b;
}

/** Sends a CancelRequest as libpq does and returns whatever came back before the close. */
function rawCancel(port: number, pid: number, secret: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1', () => s.write(cancelPacket(pid, secret)));
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.setTimeout(5000, () => s.destroy(new Error('cancel connection not closed')));
  });
}

/** A client speaking packets by hand. */
async function raw(port: number): Promise<{ write(b: Buffer): void; end(): void; bytes(n: number): Promise<Buffer>; message(): Promise<BackendMessage> }> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
  let buf = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  let closed = false;
  s.on('data', (d) => { buf = Buffer.concat([buf, d]); wake?.(); });
  s.on('close', () => { closed = true; wake?.(); });
  s.on('error', () => {});
  const until = async (ready: () => boolean): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (!ready()) {
      if (closed) throw new Error('closed');
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise<void>((r) => { wake = r; setTimeout(r, 100); });
    }
  };
  return {
    write: (b) => s.write(b),
    end: () => s.end(),
    async bytes(n) {
      await until(() => buf.length >= n);
      const out = buf.subarray(0, n);
      buf = buf.subarray(n);
      return out;
    },
    async message() {
      let m: BackendMessage | undefined;
      await until(() => (m = readMessage(buf, 0, 1 << 20)) !== undefined);
      buf = buf.subarray(m!.next);
      return { ...m!, body: Buffer.from(m!.body) };
    },
  };
}

async function waitForActive(server: PostgresServer, query: string): Promise<void> {
  await waitUntilAsync(async () => (await server.psql(`select count(*) from pg_stat_activity where state = 'active' and query = '${query}'`)) === '1', `${query} running`);
}

async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  await waitUntilAsync(async () => cond(), what);
}

async function waitUntilAsync(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
