// A node:test reporter for scripts/run-tests.mjs: one JSON line per finished test or suite,
// with its full name (suite › test), outcome and failure type, then an `end` line once the
// file's run is complete. A file whose process ends before that line ended without its
// tests running (process.exit, a crash, a kill) and the runner counts it as failed.
// https://nodejs.org/docs/latest-v20.x/api/test.html#custom-reporters

export default async function* eventsReporter(source) {
  const path = []; // names of the tests being reported, by nesting (tests in a file run one at a time)
  const running = []; // names of the tests being run, by nesting
  const diagnostics = [];
  for await (const event of source) {
    const data = event.data ?? {};
    if (event.type === 'test:dequeue') {
      // a test starts running (test:start only comes when it is reported, after it ended):
      // so that a file killed mid-test can tell which test was running
      running.length = data.nesting;
      running[data.nesting] = data.name;
      yield `${JSON.stringify({ type: 'start', name: running.join(' › '), nesting: data.nesting })}\n`;
    } else if (event.type === 'test:start') {
      path.length = data.nesting;
      path[data.nesting] = data.name;
    } else if (event.type === 'test:pass' || event.type === 'test:fail') {
      const error = data.details?.error;
      const cause = error?.cause instanceof Error ? error.cause : undefined;
      yield `${JSON.stringify({
        type: event.type === 'test:pass' ? 'pass' : 'fail',
        name: [...path.slice(0, data.nesting), data.name].join(' › '),
        nesting: data.nesting,
        suite: data.details?.type === 'suite',
        skip: data.skip !== undefined && data.skip !== false,
        todo: data.todo !== undefined && data.todo !== false,
        failureType: error?.failureType,
        error: error ? String((cause ?? error).message ?? error).split('\n')[0].slice(0, 300) : undefined,
        durationMs: data.details?.duration_ms,
      })}\n`;
    } else if (event.type === 'test:diagnostic' && data.nesting === 0) {
      diagnostics.push(data.message);
    }
  }
  yield `${JSON.stringify({ type: 'end', diagnostics })}\n`;
}
