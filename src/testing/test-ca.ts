// Test certificates made with the `openssl` command (a CA, leaves it signs, self-signed rogues).
// Never shipped (src/testing/ stays out of dist/). Used by the TLS unit tests and by the mTLS
// e2e tests.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const haveOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestCa extends CertFiles {
  dir: string;
  /** Issue a leaf certificate signed by this CA, usable as server and client. */
  issue(name: string, opts?: { sans?: string[]; serial?: number; file?: string; days?: number }): CertFiles;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A fresh CA in `dir` (created if needed). */
export function makeCa(dir: string, name = 'ambassador test CA'): TestCa {
  mkdirSync(dir, { recursive: true });
  const base = name.replace(/\W+/g, '-');
  const key = join(dir, `${base}.key`);
  const cert = join(dir, `${base}.crt`);
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  let serial = 1000;
  return {
    dir, cert, key,
    issue(leaf, opts = {}) {
      const file = opts.file ?? leaf;
      const lkey = join(dir, `${file}.key`);
      const lcsr = join(dir, `${file}.csr`);
      const lcrt = join(dir, `${file}.crt`);
      const ext = join(dir, `${file}.ext`);
      const sans = opts.sans ?? [leaf];
      writeFileSync(ext, [
        `subjectAltName=${sans.map((s) => (/^\d+\.\d+\.\d+\.\d+$/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}`,
        'extendedKeyUsage=serverAuth,clientAuth',
        'basicConstraints=CA:FALSE',
      ].join('\n') + '\n');
      openssl(['req', '-new', ...EC, '-keyout', lkey, '-out', lcsr, '-subj', `/CN=${leaf}`], dir);
      openssl(['x509', '-req', '-in', lcsr, '-CA', cert, '-CAkey', key, '-set_serial', String(opts.serial ?? ++serial),
        '-out', lcrt, '-days', String(opts.days ?? 2), '-extfile', ext], dir);
      return { cert: lcrt, key: lkey };
    },
  };
}

/** A self-signed certificate (a rogue: no CA we trust signed it). */
export function selfSigned(dir: string, name: string, cn = name): CertFiles {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  openssl(['req', '-x509', ...EC, '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', `subjectAltName=DNS:${cn}`], dir);
  return { cert, key };
}
