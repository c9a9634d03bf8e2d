/**
 * Jest runs TypeScript through swc (ts-jest does not support TypeScript 7).
 *
 * Three projects, so the quick ones need no Java: jest runs a project's globalSetup only when at least one of its
 * test files is selected, so `npm run test:unit` (or `npx jest test/unit/...`) never starts DynamoDB Local.
 *   unit        test/unit: pure lib/ logic with in-memory fakes and a fixed clock; no servers.
 *   infra       test/infra: CDK assertions and cdk-nag (synth bundles with esbuild); no servers.
 *   integration test/integration: handlers and adapters over real sockets against DynamoDB Local (started once
 *               for the whole run by global-setup.ts), the Entra emulator and the local Secrets Manager/KMS servers.
 */
const shared = {
  testEnvironment: 'node',
  // Powertools keeps a per-invocation store on the global scope; jest's soft cleanup warns about it after each file.
  testEnvironmentOptions: { globalsCleanup: 'off' },
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^@middy/([^/]+)$': '<rootDir>/node_modules/@middy/$1/index.js' },
  transform: {
    '^.+\\.(t|j|mj)s$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@middy|oauth4webapi|jose)/)'],
  setupFilesAfterEnv: [
    'aws-cdk-lib/testhelpers/jest-autoclean',
    '<rootDir>/test/fixtures/log-redaction-setup.ts',
  ],
};

export default {
  // A global option (jest-circus reads it from the global config, not from a project's).
  testTimeout: 60_000,
  projects: [
    { ...shared, displayName: 'unit', roots: ['<rootDir>/test/unit'] },
    { ...shared, displayName: 'infra', roots: ['<rootDir>/test/infra'] },
    {
      ...shared,
      displayName: 'integration',
      roots: ['<rootDir>/test/integration'],
      globalSetup: '<rootDir>/test/fixtures/global-setup.ts',
      globalTeardown: '<rootDir>/test/fixtures/global-teardown.ts',
    },
  ],
};
