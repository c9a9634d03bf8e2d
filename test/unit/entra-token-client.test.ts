import { parseRetryAfter } from '../../lib/entra-token-client';

/** A fixed "now" on a whole second, as HTTP dates have second precision. */
const NOW = Date.UTC(2031, 4, 6, 12, 0, 0);
const httpDate = (epochMs: number) => new Date(epochMs).toUTCString();

describe('parseRetryAfter', () => {
  it('reads delay seconds', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120);
  });

  it('reads zero seconds', () => {
    expect(parseRetryAfter('0', NOW)).toBe(0);
  });

  it('ignores surrounding whitespace', () => {
    expect(parseRetryAfter(' 17 ', NOW)).toBe(17);
  });

  it('reads an HTTP date as the seconds until then', () => {
    expect(parseRetryAfter(httpDate(NOW + 30_000), NOW)).toBe(30);
  });

  it('rounds the seconds until an HTTP date up', () => {
    expect(parseRetryAfter(httpDate(NOW + 30_000), NOW - 500)).toBe(31);
  });

  it('answers 0 for an HTTP date in the past', () => {
    expect(parseRetryAfter(httpDate(NOW - 60_000), NOW)).toBe(0);
  });

  it('caps delay seconds at 3600', () => {
    expect(parseRetryAfter('86400', NOW)).toBe(3600);
  });

  it('caps an HTTP date at 3600 seconds', () => {
    expect(parseRetryAfter(httpDate(NOW + 2 * 3600_000), NOW)).toBe(3600);
  });

  it('keeps exactly 3600', () => {
    expect(parseRetryAfter('3600', NOW)).toBe(3600);
  });

  it('answers undefined when the header is absent', () => {
    expect(parseRetryAfter(null, NOW)).toBeUndefined();
  });

  it('answers undefined for an empty header', () => {
    expect(parseRetryAfter('  ', NOW)).toBeUndefined();
  });

  // Retry-After is HTTP-date or 1*DIGIT (RFC 9110 10.2.3); anything else says nothing about when to retry.
  it.each(['soon', '5 seconds', '12abc', '1e3', '0x10', '1.5', '-5', '2 minutes'])(
    'answers undefined for garbage: %s',
    (value) => {
      expect(parseRetryAfter(value, NOW)).toBeUndefined();
    },
  );
});
