#!/usr/bin/env node
// A ConnectListener of an ambassador build, alone (no discovery, metrics or logging), in front
// of each --listen target, with a connect path chosen by --scenario, so that what one client
// costs on each path can be counted (bench/conncost.mjs --variant) and compared between builds:
//
//   node bench/proxies/listener-proxy.mjs --listen PORT=HOST:PORT [--listen …]
//        [--dist DIR (default dist/)] [--scenario fast|retried|raced|handshake]
//
//   fast       one endpoint: pick, connect, pipe
//   retried    every client is first sent to an endpoint that refuses (a port nothing listens
//              on, preferred by balance=srv, outlier ejection off so it stays preferred), then
//              fails over to the target
//   raced      every client is first sent to an endpoint whose connect never completes (a lost
//              SYN), raced after 1 ms by an attempt to the target, which carries it
//   handshake  one endpoint with a protocol handshake that does nothing (the handshake phase)
import net from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs, listenArgs } from '../lib/args.mjs';

const { opt } = benchArgs();
const dist = pathToFileURL(resolve(opt('dist', new URL('../../dist', import.meta.url).pathname)) + '/');
const scenario = opt('scenario', 'fast');
if (!['fast', 'retried', 'raced', 'handshake'].includes(scenario)) throw new Error(`unknown scenario ${scenario}`);
const { ConnectListener } = await import(new URL('proxy/listener.js', dist));
const { Cluster } = await import(new URL('cluster/cluster.js', dist));
const { connectWithReader } = await import(new URL('proxy/reader.js', dist));

/** A port on 127.0.0.1 that refuses connections (bound once, then released). */
async function refusedPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const endpoint = (id, host, port, priority = 0) => ({ id, source: 'static', host, port, priority, weight: 0, txt: {}, label: id });

for (const l of listenArgs()) {
  const cluster = new Cluster(`p${l.port}`, scenario === 'fast' || scenario === 'handshake' ? {} : { outlier: false });
  const target = endpoint('target', l.host, l.tport, 1);
  const options = { cluster, port: l.port, connectTimeoutMs: 10_000, noEndpointWaitMs: 5000 };
  if (scenario === 'fast') cluster.setEndpoints('static', [target]);
  if (scenario === 'handshake') {
    cluster.setEndpoints('static', [target]);
    options.handshake = async () => {};
  }
  if (scenario === 'retried') {
    cluster.setEndpoints('static', [endpoint('refusing', '127.0.0.1', await refusedPort(), 0), target]);
    options.balancer = 'srv';
  }
  if (scenario === 'raced') {
    cluster.setEndpoints('static', [endpoint('lost', '127.0.0.1', 1, 0), target]);
    options.balancer = 'srv';
    options.raceDelayMs = 1;
    options.createConnection = (ep) => (ep.id === 'lost' ? new net.Socket() : connectWithReader(ep.host, ep.port));
  }
  const listener = new ConnectListener(options);
  await listener.listen();
}
process.on('SIGTERM', () => process.exit(0));
