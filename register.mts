// `node --import @datalab/otel/register app.mjs`: start telemetry, and wait until the ESM
// loader hooks are in place so that the application's own imports are instrumented.
import { bootstrap } from './src/bootstrap.js';

await bootstrap();
