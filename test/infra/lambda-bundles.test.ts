import { readdirSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { lambdaBundling } from '../../infra/token-broker/functions';

/**
 * The client library, the CLI and their dependencies stay out of the Lambda bundles: NodejsFunction bundles each
 * functions/<name>.ts, and nothing reachable from there may come from client/, cli/ or bin/, nor from the packages
 * only they use. Checked on esbuild's own list of the files each bundle is built from.
 */

const ROOT = path.join(__dirname, '..', '..');
const HANDLERS = readdirSync(path.join(ROOT, 'functions')).filter((f) => f.endsWith('.ts'));
/** Packages only the client and the CLI import. */
const CLIENT_ONLY_PACKAGES = ['@aws-sdk/credential-providers', '@aws-crypto/sha256-js', 'tsx'];

/**
 * The files esbuild builds a handler's bundle from (as NodejsFunction bundles it), leaving out the modules named
 * in `external`.
 */
async function bundleInputs(file: string, external: readonly string[] = []): Promise<string[]> {
  const { metafile } = await build({
    entryPoints: [path.join(ROOT, 'functions', file)],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    write: false,
    metafile: true,
    logLevel: 'silent',
    external: [...external],
  });
  return Object.keys(metafile.inputs);
}

/** The files esbuild builds a handler's bundle from, as the default stack bundles it (no HTTPS proxy). */
const bundledInputs = (file: string) => bundleInputs(file, lambdaBundling(undefined).externalModules ?? []);

/**
 * Packages the token function must not carry (README, "Performance"): its cold start compiles the whole bundle,
 * and the AWS SDK's clients or the X-Ray SDK alone cost about as much as the reference handler's entire load.
 * A lazy `import()` inside the one CommonJS bundle does not help: the imported code is still compiled at load.
 */
const NOT_IN_TOKEN_BUNDLE = ['@aws-sdk/', '@smithy/', 'aws-xray-sdk-core/', '@aws-lambda-powertools/tracer/'];
const heavy = (inputs: string[]) =>
  inputs.filter((i) => NOT_IN_TOKEN_BUNDLE.some((p) => i.startsWith(`node_modules/${p}`)));

describe('the token function bundle', () => {
  it('holds no AWS SDK client and no X-Ray tracer', async () => {
    expect(heavy(await bundledInputs('token.ts'))).toEqual([]);
  });

  it('is told apart from a bundle that holds them (the check can fail)', async () => {
    expect(heavy(await bundledInputs('admin.ts'))).not.toEqual([]);
  });
});

describe('Lambda bundles', () => {
  it.each(HANDLERS.filter((f) => !['config.ts', 'runtime.ts'].includes(f)))(
    'functions/%s bundles nothing of the client library or the CLI',
    async (file) => {
      const inputs = await bundleInputs(file);
      expect(inputs.some((i) => i.startsWith('functions/'))).toBe(true);
      expect(inputs.filter((i) => /^(client|cli|bin)\//.test(i))).toEqual([]);
      expect(
        inputs.filter((i) => CLIENT_ONLY_PACKAGES.some((p) => i.startsWith(`node_modules/${p}/`))),
      ).toEqual([]);
    },
  );
});

/** The certificate issuer of kms_certificate services and the X.509 stack it brings. */
const issuerCode = (inputs: readonly string[]) =>
  inputs.filter(
    (i) => i === 'lib/credentials/kms-certificate-issuer.ts' || /^node_modules\/@peculiar\//.test(i),
  );

describe('the X.509 stack of kms_certificate (@peculiar/x509)', () => {
  it.each(HANDLERS.filter((f) => !['config.ts', 'runtime.ts', 'admin.ts'].includes(f)))(
    'is not in the bundle of functions/%s (only the admin function issues certificates)',
    async (file) => {
      expect(issuerCode(await bundleInputs(file))).toEqual([]);
    },
  );

  it('is in the admin bundle, which issues certificates (loaded there only when it does)', async () => {
    const inputs = issuerCode(await bundleInputs('admin.ts'));
    expect(inputs).toContain('lib/credentials/kms-certificate-issuer.ts');
    expect(inputs.some((i) => i.startsWith('node_modules/@peculiar/x509/'))).toBe(true);
  });
});
