import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { executeApiTail, tokenRoutes } from '../../lib/execute-api-grants';
import {
  credentialsEnvironment,
  IamBroker,
  SERVICE,
  type TestPrincipal,
  testPrincipal,
} from '../fixtures/iam-broker';

/**
 * The README's calling examples, run as shown: each is read from README.md (the fenced block after an
 * `<!-- example: name -->` marker) and run against `npm start` with TOKEN_BROKER_LOCAL_IAM, by curl, by Debian's
 * python3 with python3-botocore, and by tsx. A test only appends a line that prints the token's fingerprint (never
 * the token) so that it can compare it with the token the broker served.
 */

const ROOT = join(__dirname, '..', '..');
const TSX = join(ROOT, 'node_modules', '.bin', 'tsx');
/** Debian's python3, where `apt-get install python3-botocore` puts botocore (.ci/run installs it). */
const PYTHON = '/usr/bin/python3';

/** The README's examples by name: language of the fence and code. */
function readmeExamples(): Map<string, { lang: string; code: string }> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const examples = new Map<string, { lang: string; code: string }>();
  for (const m of readme.matchAll(/<!-- example: (\S+) -->\n```(\w+)\n([\s\S]*?)\n```/g)) {
    examples.set(m[1] as string, { lang: m[2] as string, code: m[3] as string });
  }
  return examples;
}

const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 16);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program with the given environment (PATH kept), from the repository root; stdout is not logged. */
function run(file: string, args: string[], env: Record<string, string>, stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

describe("README's calling examples against npm start with TOKEN_BROKER_LOCAL_IAM", () => {
  const examples = readmeExamples();
  let iam: IamBroker;
  let workload: TestPrincipal;
  let roleWorkload: TestPrincipal;
  let scratch: string;

  const env = (principal: TestPrincipal) => ({
    TOKEN_BROKER_URL: iam.url,
    ...credentialsEnvironment(principal),
  });
  /** The fingerprint of the token the broker currently serves for the README's service. */
  const servedFingerprint = async () =>
    fingerprint((await iam.client(workload).getToken(SERVICE)).accessToken);
  const example = (name: string) => {
    const found = examples.get(name);
    if (!found) throw new Error(`README.md has no <!-- example: ${name} --> block`);
    return found;
  };

  beforeAll(async () => {
    workload = testPrincipal('readme-app', tokenRoutes(SERVICE).map(executeApiTail));
    roleWorkload = testPrincipal('readme-role', tokenRoutes(SERVICE).map(executeApiTail), true);
    iam = await IamBroker.start([workload, roleWorkload]);
    // Inside the repository, so that the JavaScript examples resolve its packages (and `token-broker/client`).
    mkdirSync(join(ROOT, '.cache'), { recursive: true });
    scratch = mkdtempSync(join(ROOT, '.cache', 'readme-examples-'));
  });

  afterAll(async () => {
    await iam?.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('has every example the tests run', () => {
    expect([...examples.keys()].sort()).toEqual(['cli', 'curl', 'javascript', 'python', 'typescript']);
  });

  it.each([
    ['long-term keys', () => workload],
    ['a role session (session token)', () => roleWorkload],
  ])('curl --aws-sigv4 gets the token, signing with %s', async (_, principal) => {
    const { lang, code } = example('curl');
    expect(lang).toBe('bash');
    const result = await run('bash', ['-c', `set -euo pipefail\n${code}`], env(principal()));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(fingerprint(JSON.parse(result.stdout).access_token)).toBe(await servedFingerprint());
  });

  it.each([
    ['long-term keys', () => workload],
    ['a role session (session token)', () => roleWorkload],
  ])("Python with botocore's SigV4Auth and urllib gets the token, signing with %s", async (_, principal) => {
    const { lang, code } = example('python');
    expect(lang).toBe('python');
    const script = `${code}\nimport hashlib\nprint(hashlib.sha256(token.encode()).hexdigest()[:16])\n`;
    const result = await run(PYTHON, ['-c', script], env(principal()));
    // botocore missing (python3-botocore not installed) fails here with its ImportError.
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(await servedFingerprint());
  });

  it.each([
    ['typescript', 'accessToken'],
    ['javascript', 'access_token'],
  ])('the %s example gets the token', async (name, variable) => {
    const { lang, code } = example(name);
    const file = join(scratch, `${name}.${lang === 'ts' ? 'mts' : 'mjs'}`);
    writeFileSync(
      file,
      `${code}\nconst { createHash: __hash } = await import('node:crypto');\n` +
        `console.log(__hash('sha256').update(${variable}).digest('hex').slice(0, 16));\n`,
    );
    const result = await run(TSX, [file], env(roleWorkload));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(await servedFingerprint());
  });

  it('the CLI example prints an Authorization header and runs a command with the token', async () => {
    const { lang, code } = example('cli');
    expect(lang).toBe('bash');
    const result = await run('bash', ['-c', `set -euo pipefail\n${code}`], env(workload));
    expect(result.code).toBe(0);
    const [header, ...rest] = result.stdout.trim().split('\n');
    const served = await servedFingerprint();
    expect(header?.startsWith('Authorization: Bearer ')).toBe(true);
    expect(fingerprint(header?.slice('Authorization: Bearer '.length) ?? '')).toBe(served);
    expect(rest.join('\n')).toMatch(/^the command got a token of \d+ characters$/);
  });

  it('shows a workload granted one service being refused another and the admin routes (curl)', async () => {
    const { code } = example('curl');
    const otherService = code.replace(
      `/api/v2/${SERVICE}/client_credentials`,
      '/api/v2/other_service/client_credentials',
    );
    const adminRoute = code.replace(`/api/v2/${SERVICE}/client_credentials`, '/api/v2/system/service');
    expect(otherService).not.toBe(code);
    const refused = await run('bash', ['-c', `set -euo pipefail\n${otherService}`], env(workload));
    const admin = await run('bash', ['-c', `set -euo pipefail\n${adminRoute}`], env(workload));
    expect(JSON.parse(refused.stdout)).toEqual({
      message: expect.stringMatching(
        /^User: arn:aws:sts::111122223333:assumed-role\/readme-app\/readme-app-session is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:000000000000:local\/local\/GET\/api\/v2\/other_service\/client_credentials$/,
      ),
    });
    expect(JSON.parse(admin.stdout).message).toMatch(
      /is not authorized to perform: execute-api:Invoke on resource: .*\/GET\/api\/v2\/system\/service$/,
    );
  });
});
