/**
 * `correlation_id` on every line of the application's own winston loggers (SPEC §5/§6).
 * instrumentation-winston adds the trace fields but calls its log hook only when a valid span is
 * active, and with no span sink (metrics only) there is none while the request still has its
 * correlation ID. So the ID is added here, on top of that instrumentation's wrapper of the same
 * method, from the context alone.
 */
import { context } from '@opentelemetry/api';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
} from '@opentelemetry/instrumentation';
import { correlationIdFrom } from '../correlation/context';
import { DISTRO_VERSION } from '../version';
import { warnOnce } from '../warnings';

const VERSIONS = ['>=3 <4'];
const kOriginal = Symbol('datalab.otel.winstonWrite');

type Write = ((this: unknown, info: unknown, ...rest: unknown[]) => unknown) & {
  [kOriginal]?: Write;
};
interface LoggerProto {
  write: Write;
}

/** Sets `correlation_id` on a winston info object when the active context has one. */
function addCorrelationId(info: unknown): void {
  if (info === null || typeof info !== 'object') return;
  const id = correlationIdFrom(context.active());
  if (id !== undefined) (info as Record<string, unknown>).correlation_id = id;
}

export class WinstonCorrelationInstrumentation extends InstrumentationBase {
  constructor() {
    super('@datalab/otel/winston-correlation', DISTRO_VERSION, {});
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'winston',
        VERSIONS,
        (mod: unknown) => mod,
        () => {},
        [
          new InstrumentationNodeModuleFile(
            'winston/lib/winston/logger.js',
            VERSIONS,
            (logger: { prototype: LoggerProto }) => {
              wrapWrite(logger.prototype);
              return logger;
            },
            (logger: { prototype: LoggerProto } | undefined) => {
              if (logger) unwrapWrite(logger.prototype);
            },
          ),
        ],
      ),
    ];
  }
}

function wrapWrite(proto: LoggerProto): void {
  const original = proto.write;
  // The same file can reach us twice (require and import hooks): wrap once.
  if (typeof original !== 'function' || original[kOriginal] !== undefined) return;
  const write: Write = function write(this: unknown, info: unknown) {
    try {
      addCorrelationId(info);
    } catch (err) {
      warnOnce(
        'DLOTEL_INTERNAL_ERROR',
        'winston-correlation',
        `adding correlation_id to a log line failed and was skipped: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    // biome-ignore lint/complexity/noArguments: winston's write takes (info, encoding, callback)
    return original.apply(this, arguments as unknown as [unknown]);
  };
  write[kOriginal] = original;
  proto.write = write;
}

function unwrapWrite(proto: LoggerProto): void {
  // Only when ours is still on top: unwrapping from under another wrapper would remove it too.
  const original = proto.write?.[kOriginal];
  if (original !== undefined) proto.write = original;
}
