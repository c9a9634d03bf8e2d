/**
 * `token-broker`: the commands of the CLI over the client library. Everything that goes to stdout is the
 * command's result; errors go to stderr in one line (the API's message), with details under --verbose.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { type BrokerToken, TokenBrokerApiError, TokenBrokerClient } from '../client';
import { EXIT, exitCodeOf } from './exit-codes';
import { HELP } from './help';

/** A wrong command line: exit status 2 with this message. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface CliIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const OPTIONS = {
  endpoint: { type: 'string' },
  profile: { type: 'string' },
  region: { type: 'string' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  scope: { type: 'string' },
  'min-ttl': { type: 'string' },
  force: { type: 'boolean' },
  output: { type: 'string' },
  'env-var': { type: 'string' },
  file: { type: 'string' },
  'if-match': { type: 'string' },
} as const;
type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

const GLOBAL_OPTIONS = ['endpoint', 'profile', 'region', 'verbose', 'help'];
/** The options each command takes besides the global ones. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  token: ['scope', 'min-ttl', 'force', 'output', 'env-var'],
  exec: ['scope', 'min-ttl', 'env-var'],
  'services list': [],
  'services get': [],
  'services create': ['file'],
  'services update': ['file', 'if-match'],
  'services delete': ['if-match'],
  'rotate-secret': ['if-match'],
};

const OUTPUTS = ['json', 'token', 'header', 'env'] as const;

/** Runs one command line; resolves with the exit status. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const dashDash = argv.indexOf('--');
  const own = dashDash < 0 ? [...argv] : argv.slice(0, dashDash);
  const command = dashDash < 0 ? [] : argv.slice(dashDash + 1);
  let values: Values = {};
  try {
    const parsed = parseArgs({ args: own, options: OPTIONS, allowPositionals: true, strict: true });
    values = parsed.values;
    return await dispatch(parsed.positionals, values, command, io);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`token-broker: ${(error as Error).message}\nRun 'token-broker --help' for usage.\n`);
      return EXIT.usage;
    }
    report(error, Boolean(values.verbose), io);
    return exitCodeOf(error);
  }
}

async function dispatch(
  positionals: string[],
  values: Values,
  command: string[],
  io: CliIo,
): Promise<number> {
  const [name, ...args] = positionals;
  const sub = name === 'services' ? args[0] : undefined;
  const key = name === 'services' && sub !== undefined ? `services ${sub}` : name;
  if (values.help || name === undefined || name === 'help') {
    const text = `${HELP[name === 'help' ? (args[0] ?? 'main') : (name ?? 'main')] ?? HELP.main}\n`;
    // Asked for: stdout and success. No command at all: a usage error.
    if (name === undefined && !values.help) {
      io.stderr.write(text);
      return EXIT.usage;
    }
    io.stdout.write(text);
    return EXIT.ok;
  }
  const allowed = key === undefined ? undefined : COMMAND_OPTIONS[key];
  if (!allowed) {
    throw new UsageError(
      name === 'services' ? `unknown services command: ${sub ?? '(none)'}` : `unknown command: ${name}`,
    );
  }
  for (const option of Object.keys(values)) {
    if (!GLOBAL_OPTIONS.includes(option) && !allowed.includes(option))
      throw new UsageError(`--${option} does not apply to '${key}'`);
  }
  if (command.length > 0 && name !== 'exec') throw new UsageError(`'${key}' takes no command after --`);
  const operands = name === 'services' ? args.slice(1) : args;
  const expected = key === 'services list' || key === 'services create' ? 0 : 1;
  if (operands.length !== expected) {
    throw new UsageError(
      expected === 0
        ? `'${key}' takes no arguments${key === 'services create' ? ' (the body comes from --file)' : ''}`
        : `'${key}' takes one ${name === 'token' || name === 'exec' ? 'service' : 'service name'}` +
            (name === 'exec' && operands.length > 1 ? '; put the command after --' : ''),
    );
  }
  const client = makeClient(values, io);
  const operand = operands[0] as string;
  switch (key) {
    case 'token':
      return printToken(client, operand, values, io);
    case 'exec':
      return execWithToken(client, operand, values, command, io);
    case 'services list':
      return printJson(io, { resource: await client.listServices() });
    case 'services get':
      return printService(io, values, await client.getService(operand));
    case 'services create':
      return printService(io, values, await client.createService(readJsonFile(values.file, io)));
    case 'services update': {
      const patch = readJsonFile(values.file, io);
      return printService(
        io,
        values,
        await client.updateService(operand, patch, { ifMatch: values['if-match'] }),
      );
    }
    case 'services delete':
      return printService(io, values, await client.deleteService(operand, { ifMatch: values['if-match'] }));
    default: {
      const secret = await readSecret(io);
      return printService(
        io,
        values,
        await client.rotateSecret(operand, secret, { ifMatch: values['if-match'] }),
      );
    }
  }
}

function makeClient(values: Values, io: CliIo): TokenBrokerClient {
  const endpoint = values.endpoint ?? io.env.TOKEN_BROKER_URL;
  if (!endpoint) throw new UsageError('no endpoint: pass --endpoint <url> or set TOKEN_BROKER_URL');
  try {
    new URL(endpoint);
  } catch {
    throw new UsageError(`--endpoint "${endpoint}" is not a URL`);
  }
  try {
    return new TokenBrokerClient({
      endpoint,
      region: values.region,
      profile: values.profile,
      onRetry: values.verbose
        ? ({ attempt, delayMs, reason }) =>
            io.stderr.write(`token-broker: ${reason}; retry ${attempt} in ${Math.round(delayMs)} ms\n`)
        : undefined,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

function tokenOptions(values: Values) {
  const minTtlText = values['min-ttl'];
  if (minTtlText !== undefined && !/^\d+$/.test(minTtlText)) {
    throw new UsageError(`--min-ttl must be a whole number of seconds, not "${minTtlText}"`);
  }
  const minTtl = minTtlText === undefined ? undefined : Number(minTtlText);
  if (minTtl !== undefined && minTtl > 3600) throw new UsageError('--min-ttl must be at most 3600');
  const envVar = values['env-var'] ?? 'AZURE_ACCESS_TOKEN';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envVar))
    throw new UsageError(`--env-var "${envVar}" is not a variable name`);
  return { scope: values.scope, minTtl, envVar };
}

async function printToken(client: TokenBrokerClient, service: string, values: Values, io: CliIo) {
  const output = values.output ?? 'json';
  if (!OUTPUTS.includes(output as (typeof OUTPUTS)[number])) {
    throw new UsageError(`--output must be one of ${OUTPUTS.join(', ')}, not "${output}"`);
  }
  const { scope, minTtl, envVar } = tokenOptions(values);
  const token = values.force
    ? await client.forceRefresh(service, { scope })
    : await client.getToken(service, { scope, minTtl });
  const text: Record<(typeof OUTPUTS)[number], string> = {
    json: JSON.stringify(tokenJson(token)),
    token: token.accessToken,
    header: `Authorization: ${token.tokenType} ${token.accessToken}`,
    env: `${envVar}=${token.accessToken}`,
  };
  io.stdout.write(`${text[output as (typeof OUTPUTS)[number]]}\n`);
  return EXIT.ok;
}

/** The API's token response (snake_case), as `GET …/client_credentials` returns it. */
function tokenJson(token: BrokerToken) {
  const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_in: token.expiresIn,
    expires_at: iso(token.expiresAt),
    acquired_at: iso(token.acquiredAt),
    scope: token.scope,
  };
}

async function execWithToken(
  client: TokenBrokerClient,
  service: string,
  values: Values,
  command: string[],
  io: CliIo,
): Promise<number> {
  const [file, ...args] = command;
  if (file === undefined) throw new UsageError("'exec' needs a command after --");
  const { scope, minTtl, envVar } = tokenOptions(values);
  const token = await client.getToken(service, { scope, minTtl });
  return new Promise<number>((resolve) => {
    const child = spawn(file, args, { stdio: 'inherit', env: { ...io.env, [envVar]: token.accessToken } });
    // The terminal sends SIGINT to both processes; the command decides what it means. Others are passed on.
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [signal, handler] of handlers) process.on(signal, handler);
    const done = (status: number) => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
      resolve(status);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      io.stderr.write(`token-broker: cannot run ${file}: ${error.code ?? error.message}\n`);
      done(error.code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => done(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}

function printJson(io: CliIo, value: unknown): number {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  return EXIT.ok;
}

function printService(io: CliIo, values: Values, result: { service: unknown; etag?: string }): number {
  if (values.verbose && result.etag) io.stderr.write(`token-broker: ETag ${result.etag}\n`);
  return printJson(io, result.service);
}

function readJsonFile(path: string | undefined, io: CliIo): Record<string, unknown> {
  if (path === undefined)
    throw new UsageError('--file <body.json> is required (--file - reads standard input)');
  let text: string;
  try {
    text =
      path === '-' ? readFileSync((io.stdin as { fd?: number }).fd ?? 0, 'utf8') : readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new UsageError(
      `${path === '-' ? 'standard input' : path} is not valid JSON: ${(error as Error).message}`,
    );
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new UsageError(`${path === '-' ? 'standard input' : path} must hold a JSON object`);
  }
  return body as Record<string, unknown>;
}

async function readSecret(io: CliIo): Promise<string> {
  if (io.stdin.isTTY) {
    throw new UsageError(
      'rotate-secret reads the new secret from standard input; pipe it in (printf \'%s\' "$SECRET" | token-broker rotate-secret <name>)',
    );
  }
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(Buffer.from(chunk as Buffer));
  const secret = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (secret.length === 0) throw new UsageError('standard input held no secret');
  if (/[\r\n]/.test(secret)) throw new UsageError('the secret read from standard input spans several lines');
  return secret;
}

/** One line on stderr: the API's message; with --verbose, what else the error carries. */
function report(error: unknown, verbose: boolean, io: CliIo): void {
  const message = error instanceof Error ? error.message : String(error);
  const [first] = message.split('\n');
  const status = error instanceof TokenBrokerApiError ? ` (HTTP ${error.status})` : '';
  io.stderr.write(`token-broker: ${first}${status}\n`);
  if (!verbose) return;
  if (error instanceof TokenBrokerApiError) {
    const details = {
      status: error.status,
      error_type: error.errorType,
      request_id: error.requestId,
      retry_after_seconds: error.retryAfterSeconds,
      error: error.error,
    };
    io.stderr.write(`${JSON.stringify(details, null, 2)}\n`);
  } else if (error instanceof Error && error.cause) {
    io.stderr.write(`caused by: ${String((error.cause as Error).message ?? error.cause)}\n`);
  }
}
