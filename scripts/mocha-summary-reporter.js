'use strict';
// A mocha reporter that prints the spec output and then one machine-readable line,
// "mocha: N passed, N failed, N skipped", which scripts/test.sh adds to the native test count.
// It also writes the same counts as JSON to .test-results/mocha.json.
const fs = require('node:fs');
const path = require('node:path');
const Mocha = require('mocha');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const failures = [];
    runner.on(Mocha.Runner.constants.EVENT_TEST_FAIL, (test, err) => {
      failures.push({ title: test.fullTitle(), message: String(err && err.message) });
    });
    runner.once(Mocha.Runner.constants.EVENT_RUN_END, () => {
      const stats = runner.stats || {};
      const passed = stats.passes || 0;
      // Hook failures are not tests but must fail the run all the same.
      const failed = Math.max(stats.failures || 0, failures.length);
      const skipped = stats.pending || 0;
      const dir = path.resolve('.test-results');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'mocha.json'),
        JSON.stringify({ passed, failed, skipped, failures }, null, 2));
      process.stdout.write(`mocha: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
    });
  }
}

module.exports = SummaryReporter;
