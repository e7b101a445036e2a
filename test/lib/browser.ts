// A real headless browser for the tests: the system's Chromium (Debian's `chromium` package),
// driven by playwright-core, which downloads nothing. Everything that would talk to the
// outside (background networking, component updates, sync, QUIC) is switched off; inside the
// runner's network namespace nothing could leave anyway.
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** The system Chromium: CHROMIUM_PATH, else Debian's. */
export function chromiumPath(): string | undefined {
  for (const p of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']) if (p && existsSync(p)) return p;
  return undefined;
}

/**
 * Why the browser tests cannot run here, or undefined. In CI (CI=true) a missing browser is no
 * reason: the test then fails, saying so, instead of passing unseen.
 */
export function browserMissing(): string | undefined {
  if (chromiumPath() || process.env.CI === 'true') return undefined;
  return 'needs Chromium (apt-get install chromium, or CHROMIUM_PATH)';
}

/** Starts a headless Chromium with a fresh profile of its own (playwright makes and removes it). */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('no Chromium found: install the chromium package or set CHROMIUM_PATH');
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox', // as root
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--disable-extensions',
      '--metrics-recording-only',
      '--no-default-browser-check',
    ],
  });
}
