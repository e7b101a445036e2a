// A node:test reporter for scripts/test.mjs: one JSON line per finished test or suite (name,
// depth, outcome, skip reason, duration, first line of the error), so the runner can count,
// time and judge every file without parsing the human-readable output. The same events on
// Node 20, 24 and 26 (checked: `details.type` is missing on 20 for tests, present for suites).
export default async function* testEvents(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data;
    yield JSON.stringify({
      ok: event.type === 'test:pass',
      name: d.name,
      nesting: d.nesting,
      suite: d.details?.type === 'suite',
      skip: d.skip === undefined || d.skip === false ? undefined : String(d.skip === true ? '' : d.skip),
      todo: d.todo === undefined || d.todo === false ? undefined : true,
      ms: d.details?.duration_ms,
      error: event.type === 'test:fail' ? String(d.details?.error?.cause?.message ?? d.details?.error?.message ?? '').split('\n')[0] : undefined,
    }) + '\n';
  }
}
