/** One line on stderr and a non-zero exit: what every user-facing error looks like. */
export function fail(message: string, code = 2): never {
  const oneLine = message.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
  process.stderr.write(`ambassador: error: ${oneLine}\n`);
  process.exit(code);
}
