/** One line on stderr and a non-zero exit: what every user-facing error looks like. */
export function fail(message: string, code = 2): never {
  process.stderr.write(`ambassador: error: ${message.split('\n')[0]}\n`);
  process.exit(code);
}
