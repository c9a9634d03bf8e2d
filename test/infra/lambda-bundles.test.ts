import { readdirSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

/**
 * The client library, the CLI and their dependencies stay out of the Lambda bundles: NodejsFunction bundles each
 * functions/<name>.ts, and nothing reachable from there may come from client/, cli/ or bin/, nor from the packages
 * only they use. Checked on esbuild's own list of the files each bundle is built from.
 */

const ROOT = path.join(__dirname, '..', '..');
const HANDLERS = readdirSync(path.join(ROOT, 'functions')).filter((f) => f.endsWith('.ts'));
/** Packages only the client and the CLI import. */
const CLIENT_ONLY_PACKAGES = ['@aws-sdk/credential-providers', '@aws-crypto/sha256-js', 'tsx'];

describe('Lambda bundles', () => {
  it.each(HANDLERS.filter((f) => !['config.ts', 'runtime.ts'].includes(f)))(
    'functions/%s bundles nothing of the client library or the CLI',
    async (file) => {
      const { metafile } = await build({
        entryPoints: [path.join(ROOT, 'functions', file)],
        bundle: true,
        platform: 'node',
        format: 'cjs',
        write: false,
        metafile: true,
        logLevel: 'silent',
      });
      const inputs = Object.keys(metafile.inputs);
      expect(inputs.some((i) => i.startsWith('functions/'))).toBe(true);
      expect(inputs.filter((i) => /^(client|cli|bin)\//.test(i))).toEqual([]);
      expect(
        inputs.filter((i) => CLIENT_ONLY_PACKAGES.some((p) => i.startsWith(`node_modules/${p}/`))),
      ).toEqual([]);
    },
  );
});
