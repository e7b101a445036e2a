// The package entry as an application sees it: `import … from 'mdns-ambassador'` (the package
// resolved by its own name, through package.json "exports", to dist/), with type declarations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connectTo, readBytes, refusedPort, startServer } from './testing/tcp-kit.js';

/** By name, as an application imports it (a variable: the compiler checks against src/, the runtime loads dist/). */
const PACKAGE = 'mdns-ambassador';
const load = () => import(PACKAGE) as Promise<typeof import('./index.js')>;

test('the package entry resolves to dist/index.js and declares its types', async () => {
  const entry = fileURLToPath(import.meta.resolve(PACKAGE));
  assert.match(entry, /\/dist\/index\.js$/);
  const lib = await load();
  for (const name of ['Ambassador', 'buildConfig', 'ConfigError', 'createLogger', 'MdnsEngine', 'InterfaceSelection', 'HostNetwork']) {
    assert.equal(typeof (lib as Record<string, unknown>)[name], 'function', name);
  }
  const types = entry.replace(/\.js$/, '.d.ts');
  assert.ok(existsSync(types), 'dist/index.d.ts');
  for (const name of ['Ambassador', 'MdnsEngine', 'Config', 'ServiceInstance', 'Registration']) assert.match(readFileSync(types, 'utf8'), new RegExp(`\\b${name}\\b`));
});

test('embedded: an ambassador made from options forwards a connection and stops', async () => {
  const { Ambassador, buildConfig, createLogger } = await load();
  const upstream = await startServer({ greeting: 'hello\n' });
  const port = await refusedPort();
  const amb = new Ambassador(buildConfig({ static: [`kv=127.0.0.1:${upstream.port}`], connect: [`kv=127.0.0.1:${port}`] }), createLogger('silent'));
  try {
    await amb.start();
    assert.equal(amb.engine, undefined, 'no multicast for --static');
    const s = await connectTo(port);
    assert.equal((await readBytes(s, 6)).toString(), 'hello\n');
    s.destroy();
  } finally {
    await amb.stop();
    await upstream.close();
  }
});

test('a stop while starting (Ctrl-C at startup): start() resolves without error, nothing is left listening', async () => {
  const { Ambassador, buildConfig, createLogger } = await load();
  const upstream = await startServer({ greeting: 'hello\n' });
  const port = await refusedPort();
  const amb = new Ambassador(buildConfig({ static: [`kv=127.0.0.1:${upstream.port}`], connect: [`kv=127.0.0.1:${port}`] }), createLogger('silent'));
  try {
    const started = amb.start();
    const stopped = amb.stop();
    await Promise.all([started, stopped]);
    await assert.rejects(connectTo(port), /ECONNREFUSED/, 'the listener is closed, not started again after the stop');
  } finally {
    await upstream.close();
  }
});
