/**
 * Skipping with a reason a reader can check: the reason is printed under the test and again in
 * the run's closing summary (reporter.ts). Every skip in the suite goes through here (a unit test
 * checks it), so none is silent.
 */
export const kSkipReason = Symbol.for('@datalab/otel test skip reason');

export type ReasonedTest = Mocha.Runnable & { [kSkipReason]?: string };

export function skipBecause(ctx: Mocha.Context, reason: string): never {
  const test = ctx.test as ReasonedTest | undefined;
  if (test) test[kSkipReason] = reason;
  console.log(`      skipped: ${reason}`);
  ctx.skip();
}
