// `node --import @datalab/otel/register app.mjs`: start telemetry, and wait until the ESM
// loader hooks are in place so that the application's own imports are instrumented. The Node.js
// version is checked before anything of the SDK is loaded (node-version.ts): imports are hoisted,
// so the rest comes through import().
import { nodeIsSupported } from './src/node-version.js';

if (nodeIsSupported()) {
  const { keepTypeScriptEntryOnRequireHook } = await import('./src/esm-hooks.js');
  keepTypeScriptEntryOnRequireHook(process.argv[1]);
  const { bootstrap } = await import('./src/bootstrap.js');
  await bootstrap();
}
