/**
 * Skipping with a reason a reader can check: the reason is printed under the test and again in
 * the run's closing summary (reporter.ts). Every skip in the suite goes through here (a unit test
 * checks it), so none is silent.
 */
export const kSkipReason = Symbol.for('@datalab/otel test skip reason');

export type ReasonedTest = Mocha.Runnable & { [kSkipReason]?: string };

export function skipBecause(ctx: Mocha.Context, reason: string): never {
  for (const test of skippedBy(ctx)) test[kSkipReason] ??= reason;
  console.log(`      skipped: ${reason}`);
  ctx.skip();
}

/**
 * The tests a skip in this context skips. Inside a test, that test. Inside a hook, mocha marks
 * other tests pending with no link back to the hook, so the reason goes on them here: a "before
 * each" hook skips the current test, a "before all" hook every test of its suite and sub-suites.
 */
function skippedBy(ctx: Mocha.Context): ReasonedTest[] {
  const runnable = ctx.test;
  if (!runnable) return [];
  if ((runnable as Mocha.Runnable & { type?: string }).type !== 'hook') return [runnable];
  const suite = runnable.parent;
  // mocha keeps the "before all" hooks in a private list; its hook titles say the same in prose.
  const beforeAll = (suite as unknown as { _beforeAll?: unknown[] } | undefined)?._beforeAll;
  if (suite && beforeAll?.includes(runnable)) return allTests(suite);
  return ctx.currentTest ? [ctx.currentTest] : [];
}

function allTests(suite: Mocha.Suite): ReasonedTest[] {
  return [...suite.tests, ...suite.suites.flatMap(allTests)];
}
