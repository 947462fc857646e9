/**
 * mocha's spec reporter, plus the plain closing line `N passed, N failed` (and `, N skipped`)
 * that CI systems read to tell a run that tested something from one that ran nothing.
 */
import Mocha from 'mocha';
import { kSkipReason, type ReasonedTest } from './skip';

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    const skipped: string[] = [];
    runner.on(Mocha.Runner.constants.EVENT_TEST_PENDING, (test: ReasonedTest) => {
      skipped.push(`skipped: ${test.fullTitle()}: ${test[kSkipReason] ?? 'no reason given'}`);
    });
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const { passes, failures, pending } = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      process.stdout.write(
        `\n${skipped.map((line) => `${line}\n`).join('')}` +
          `${passes} passed, ${failures} failed${pending ? `, ${pending} skipped` : ''}\n`,
      );
    });
  }
}

export = SpecWithSummary;
