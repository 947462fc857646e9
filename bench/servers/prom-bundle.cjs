// express-prom-bundle as its README sets it up for RED metrics: method, path and status labels
// on a duration histogram, plus prom-client's default process metrics, served on /metrics of
// the application's own port.
const promBundle = require('express-prom-bundle');

module.exports = () =>
  promBundle({
    includeMethod: true,
    includePath: true,
    includeStatusCode: true,
    promClient: { collectDefaultMetrics: {} },
  });
