import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const FUNCTIONS = join(__dirname, '..', '..', 'functions');
// An AWS SDK v3 client package imported lazily.
const DYNAMIC_SDK_IMPORT = /import\(\s*'@aws-sdk\/client-[a-z0-9-]+'\s*\)/;
// An AWS client class, from an @aws-sdk/client-* package or the broker's own (functions/aws-json.ts), constructed
// with `new`.
const CLIENT_IMPORT = /import\s*\{([^}]*)\}\s*from\s*'(?:@aws-sdk\/client-[a-z0-9-]+|\.\/aws-json)'/g;

/** The AWS client classes each handler file constructs itself. */
function clientsConstructedIn(file: string): string[] {
  const source = readFileSync(join(FUNCTIONS, file), 'utf8');
  const imported = [...source.matchAll(CLIENT_IMPORT)].flatMap((m) =>
    (m[1] as string)
      .split(',')
      .map((name) => name.replace(/^\s*type\s+/, '').trim())
      .filter((name) => name.endsWith('Client')),
  );
  return imported.filter((name) => new RegExp(`new\\s+${name}\\s*\\(`).test(source));
}

describe('AWS clients of the Lambda handlers', () => {
  it('are built only by functions/aws-clients.ts, so every AWS call of every function has a bounded time', () => {
    const offenders = readdirSync(FUNCTIONS)
      .filter((file) => file.endsWith('.ts') && file !== 'aws-clients.ts')
      .flatMap((file) => clientsConstructedIn(file).map((client) => `${file}: new ${client}`));
    expect(offenders).toEqual([]);
  });

  it('are loaded lazily only by functions/aws-clients.ts, so a lazily loaded client is bounded too', () => {
    const offenders = readdirSync(FUNCTIONS)
      .filter((file) => file.endsWith('.ts') && file !== 'aws-clients.ts')
      .filter((file) => DYNAMIC_SDK_IMPORT.test(readFileSync(join(FUNCTIONS, file), 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('recognises a client constructed outside the helper (the check can fail)', () => {
    expect(DYNAMIC_SDK_IMPORT.test("const { STSClient } = await import('@aws-sdk/client-sts');")).toBe(true);
    expect(clientsConstructedIn('aws-clients.ts')).toEqual(['AwsJsonClient']);
  });
});
