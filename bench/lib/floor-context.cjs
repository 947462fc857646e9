// The floor under anything that carries a request context through async code (correlation IDs
// in log lines, trace context on outbound calls): OpenTelemetry's AsyncLocalStorage context
// manager entered once per request, and nothing else: no span, no metric, no header.
// Loaded with --require by the `floor-context` configuration.
const http = require('node:http');
const { context, createContextKey, ROOT_CONTEXT } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const key = createContextKey('bench floor');
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function floorEmit(event, request, response) {
  // biome-ignore lint/complexity/noArguments: every server event passes here; no array per call
  if (event !== 'request') return emit.apply(this, arguments);
  return context.with(ROOT_CONTEXT.setValue(key, request), emit, this, event, request, response);
};
