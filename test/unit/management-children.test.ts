import assert from 'node:assert/strict';
import { mayLoadDistro } from '../../src/management-server';

const viaNodeOptions = '--import @datalab/otel/register';

describe('management server: which child processes hold the idle bind back', () => {
  it('a child that cannot load the preload never does (Chrome, ffmpeg, sleep)', () => {
    for (const [file, args] of [
      ['sleep', ['sleep', '30']],
      ['/usr/bin/chromium', ['/usr/bin/chromium', '--headless']],
      ['/bin/sh', ['/bin/sh', '-c', 'ffmpeg -i in.mp4 out.webm']],
    ] as const) {
      assert.equal(
        mayLoadDistro({ spawnfile: file, spawnargs: args }, viaNodeOptions),
        false,
        file,
      );
    }
  });

  it('node with the register flag, or inheriting it through NODE_OPTIONS, does', () => {
    const fork = { spawnfile: process.execPath, spawnargs: [process.execPath, 'job.js'] };
    assert.equal(mayLoadDistro(fork, viaNodeOptions), true);
    assert.equal(mayLoadDistro(fork, undefined), false);
    assert.equal(
      mayLoadDistro(
        {
          spawnfile: process.execPath,
          spawnargs: [process.execPath, '--import', '@datalab/otel/register', 'sandbox.js'],
        },
        undefined,
      ),
      true,
    );
  });

  it('a shell line that starts Node.js may run the application', () => {
    const line = (cmd: string) => ({ spawnfile: '/bin/sh', spawnargs: ['/bin/sh', '-c', cmd] });
    assert.equal(mayLoadDistro(line('nest start'), viaNodeOptions), true);
    assert.equal(mayLoadDistro(line('"/opt/node/bin/node" "dist/main.js"'), undefined), true);
    assert.equal(mayLoadDistro(line('sleep 30'), viaNodeOptions), false);
  });
});
