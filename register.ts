// `node --require @datalab/otel/register app.js`: start telemetry before the application loads.
// The Node.js version is checked before anything of the SDK is loaded (node-version.ts).
import { nodeIsSupported } from './src/node-version';

if (nodeIsSupported()) {
  void (require('./src/bootstrap') as typeof import('./src/bootstrap')).bootstrap();
}
