#!/usr/bin/env node
// Minimal Node TCP proxies for the data path study (issue 7): each isolates one technique, so
// the harness can measure it side by side with HAProxy and the ambassador.
//
//   node bench/proxies/node-proxy.mjs --listen PORT=HOST:PORT [--listen …]
//        [--mode pipe|manual] [--no-delay 0|1] [--hwm BYTES] [--workers N]
//        [--semi MB]
//
//   pipe    Readable.pipe() both ways (what src/proxy/pipe.ts does)
//   manual  'data' → write(), pause on false, resume on 'drain'
//   --hwm   readable/writable highWaterMark of both sockets
//   --workers N  N processes sharing the listening socket (cluster, SCHED_NONE: the kernel
//                spreads accepts, as SO_REUSEPORT would)
import cluster from 'node:cluster';
import net from 'node:net';

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : def;
};
const listens = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--listen') {
    const [port, target] = argv[i + 1].split('=');
    const [host, tport] = target.split(':');
    listens.push({ port: Number(port), host, tport: Number(tport) });
  }
}
const mode = opt('mode', 'pipe');
const noDelay = opt('no-delay', '1') === '1';
const hwm = opt('hwm') ? Number(opt('hwm')) : undefined;
const workers = Number(opt('workers', '1'));

if (workers > 1 && cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  for (let i = 0; i < workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  for (const l of listens) {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay, highWaterMark: hwm }, (client) => {
      const upstream = net.connect({ host: l.host, port: l.tport, allowHalfOpen: true, noDelay, highWaterMark: hwm });
      const destroy = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', destroy);
      upstream.on('error', destroy);
      upstream.once('connect', () => {
        if (noDelay) upstream.setNoDelay(true);
        if (mode === 'manual') {
          pump(client, upstream);
          pump(upstream, client);
        } else {
          client.pipe(upstream);
          upstream.pipe(client);
        }
        client.resume();
      });
    });
    server.listen(l.port, '127.0.0.1');
  }
  process.on('SIGTERM', () => process.exit(0));
}

function pump(src, dst) {
  src.on('data', (chunk) => {
    if (!dst.write(chunk)) src.pause();
  });
  dst.on('drain', () => src.resume());
  src.on('end', () => dst.end());
}
