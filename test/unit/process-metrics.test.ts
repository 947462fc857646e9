import assert from 'node:assert/strict';
import { parseMaxOpenFiles, parseStatus } from '../../src/metrics/process';

describe('process metrics: /proc parsing', () => {
  it('reads VmRSS, VmSize and VmData of /proc/<pid>/status in bytes', () => {
    const status = [
      'Name:\tnode',
      'VmPeak:\t 1200000 kB',
      'VmSize:\t 1100000 kB',
      'VmHWM:\t   90000 kB',
      'VmRSS:\t   80000 kB',
      'VmData:\t  600000 kB',
      'VmStk:\t     132 kB',
      'Threads:\t11',
    ].join('\n');
    assert.deepEqual(parseStatus(status), {
      VmSize: 1100000 * 1024,
      VmRSS: 80000 * 1024,
      VmData: 600000 * 1024,
    });
    // A kernel thread has no Vm* lines: nothing, rather than zeros.
    assert.deepEqual(parseStatus('Name:\tkthreadd\nThreads:\t1\n'), {});
  });

  it('reads the soft limit of Max open files in /proc/<pid>/limits', () => {
    const limits = [
      'Limit                     Soft Limit           Hard Limit           Units     ',
      'Max cpu time              unlimited            unlimited            seconds   ',
      'Max open files            20000                1048576              files     ',
      'Max locked memory         8388608              8388608              bytes     ',
    ].join('\n');
    assert.equal(parseMaxOpenFiles(limits), 20000);
    assert.equal(
      parseMaxOpenFiles(
        'Max open files            unlimited            unlimited            files',
      ),
      undefined,
    );
    assert.equal(parseMaxOpenFiles('Max processes 100 100 processes'), undefined);
  });
});
