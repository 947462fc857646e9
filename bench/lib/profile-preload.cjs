// `--profile`: loaded with --require before any preload. The first SIGUSR2 starts V8's sampling
// profiler, the second stops it and writes BENCH_PROFILE_FILE (.cpuprofile, readable by Chrome
// DevTools and by bench/profile-summary.mjs). The load generator sends both around the measured
// window, so the profile covers the same requests as the figures.
const { writeFileSync } = require('node:fs');
const inspector = require('node:inspector');

const file = process.env.BENCH_PROFILE_FILE;
const session = new inspector.Session();
session.connect();
let state = 'idle';
process.on('SIGUSR2', () => {
  if (state === 'idle') {
    state = 'profiling';
    session.post('Profiler.enable', () =>
      session.post('Profiler.setSamplingInterval', { interval: 100 }, () =>
        session.post('Profiler.start'),
      ),
    );
  } else if (state === 'profiling') {
    state = 'done';
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(file, JSON.stringify(result.profile));
      console.log(JSON.stringify({ event: 'profiled', file, error: err?.message }));
    });
  }
});
