import net from 'node:net';

/** The runtime API did not answer (HAProxy not running, restarting, or too slow). */
export class RuntimeApiError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = 'RuntimeApiError';
  }
}

/** A command HAProxy refused (its answer in `message`), e.g. "No such server.". */
export class CommandRefused extends Error {
  constructor(readonly command: string, message: string) {
    super(`${command}: ${message}`);
    this.name = 'CommandRefused';
  }
}

/**
 * The prompt interactive mode prints before every answer: how answers are told apart. A worker's
 * runtime API prints "\n> ", the master CLI "master> ".
 */
export const WORKER_PROMPT = '\n> ';
export const MASTER_PROMPT = 'master> ';

/**
 * HAProxy's runtime API (the "stats socket", management.txt section 9.3) over its unix socket.
 * One connection per batch of commands, in interactive mode (`prompt`), so that each command's
 * answer is framed by the prompt and a refused command is told from an accepted one. Batches run
 * one at a time, in call order: a later state never overtakes an earlier one.
 */
export class RuntimeApi {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(readonly socketPath: string, private readonly prompt = WORKER_PROMPT, private readonly timeoutMs = 2000) {}

  /** The answers of `commands`, in order (an empty string for a command that prints nothing). */
  run(commands: readonly string[]): Promise<string[]> {
    const next = this.tail.then(() => this.exchange(commands), () => this.exchange(commands));
    this.tail = next.catch(() => {});
    return next;
  }

  /** One command; its answer. */
  async one(command: string): Promise<string> {
    return (await this.run([command]))[0]!;
  }

  private exchange(commands: readonly string[]): Promise<string[]> {
    if (commands.length === 0) return Promise.resolve([]);
    for (const c of commands) if (/[\n;]/.test(c)) return Promise.reject(new Error(`not one command: ${JSON.stringify(c)}`));
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.socketPath);
      const chunks: Buffer[] = [];
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err) return reject(err);
        const text = Buffer.concat(chunks).toString('utf8');
        // "prompt" answers with a first prompt; then one answer per command, each ended by a prompt.
        const parts = text.split(this.prompt);
        if (parts.length < commands.length + 1) {
          return reject(new RuntimeApiError(`HAProxy's runtime API closed after ${parts.length - 1} of ${commands.length} answers`, 'ETRUNCATED'));
        }
        resolve(parts.slice(1, commands.length + 1).map((p) => p.replace(/\n+$/, '')));
      };
      const timer = setTimeout(() => finish(new RuntimeApiError(`HAProxy's runtime API did not answer within ${this.timeoutMs} ms`, 'ETIMEDOUT')), this.timeoutMs);
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('error', (err: NodeJS.ErrnoException) => finish(new RuntimeApiError(`HAProxy's runtime API: ${err.code ?? err.message}`, err.code ?? 'EIO')));
      socket.on('end', () => finish());
      socket.on('close', () => finish());
      socket.on('connect', () => socket.end(`prompt\n${commands.join('\n')}\nquit\n`));
    });
  }
}

/**
 * HAProxy's complaint in the answer to a command, or undefined when it did what was asked.
 * `set server` answers nothing when it worked, or a sentence saying why not; an address change
 * reports success as "IP changed from …".
 */
export function refusal(answer: string): string | undefined {
  const text = answer.trim();
  if (text === '' || /^IP changed from|^no need to change|port changed from/i.test(text)) return undefined;
  return text.split('\n')[0]!;
}

/** Runs `commands` and fails on the first one HAProxy refused. */
export async function runChecked(api: RuntimeApi, commands: readonly string[]): Promise<void> {
  const answers = await api.run(commands);
  answers.forEach((a, i) => {
    const why = refusal(a);
    if (why !== undefined) throw new CommandRefused(commands[i]!, why);
  });
}

/** One row of `show stat` (CSV), by column name. */
export type StatRow = Record<string, string>;

/** Parses `show stat` CSV: the header line starts with "# ". */
export function parseStat(csv: string): StatRow[] {
  const lines = csv.split('\n').filter((l) => l.length > 0);
  const head = lines.shift();
  if (!head?.startsWith('# ')) return [];
  const names = head.slice(2).split(',');
  return lines.map((line) => {
    const cells = line.split(',');
    const row: StatRow = {};
    names.forEach((n, i) => {
      if (n) row[n] = cells[i] ?? '';
    });
    return row;
  });
}

/** The master CLI's `show proc`: the current workers' pids (the newest first), and the old ones still finishing. */
export function parseProc(text: string): { workers: number[]; old: number[] } {
  const out = { workers: [] as number[], old: [] as number[] };
  let list: number[] | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) {
      list = /old workers/.test(line) ? out.old : /workers/.test(line) ? out.workers : undefined;
      continue;
    }
    const pid = Number(line.trim().split(/\s+/)[0]);
    if (list && pid > 0) list.push(pid);
  }
  return out;
}

/** `show info` as key → value. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(': ');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 2);
  }
  return out;
}
