/** Jest runs TypeScript through swc (ts-jest does not support TypeScript 7). */
export default {
  testEnvironment: 'node',
  // Powertools keeps a per-invocation store on the global scope; jest's soft cleanup warns about it after each file.
  testEnvironmentOptions: { globalsCleanup: 'off' },
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^@middy/([^/]+)$': '<rootDir>/node_modules/@middy/$1/index.js' },
  transform: {
    '^.+\\.(t|j|mj)s$': ['@swc/jest', { jsc: { target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  transformIgnorePatterns: ['/node_modules/(?!(@middy|oauth4webapi)/)'],
  setupFilesAfterEnv: [
    'aws-cdk-lib/testhelpers/jest-autoclean',
    '<rootDir>/test/fixtures/log-redaction-setup.ts',
  ],
  globalSetup: '<rootDir>/test/fixtures/global-setup.ts',
  globalTeardown: '<rootDir>/test/fixtures/global-teardown.ts',
  testTimeout: 60_000,
};
