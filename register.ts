// `node --require @datalab/otel/register app.js`: start telemetry before the application loads.
import { bootstrap } from './src/bootstrap';

void bootstrap();
