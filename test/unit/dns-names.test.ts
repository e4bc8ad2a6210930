import { describe, expect, it } from 'vitest';
import {
  dnsZone,
  parseUpstreamAddress,
  replicaHostName,
  serviceRecordName,
  wakeHostName,
} from '../../src/dns/names.js';

const DOCKER_ID = '3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8';

describe('dns names', () => {
  it.each([
    { build: () => dnsZone('Inst1'), expected: 'inst1.luma.internal.' },
    { build: () => serviceRecordName('inst1', 'api'), expected: '_http._tcp.api.inst1.luma.internal.' },
    { build: () => replicaHostName('inst1', 'api', DOCKER_ID), expected: '3f2a9c1b7d4e.api.inst1.luma.internal.' },
    { build: () => wakeHostName('inst1', 'api'), expected: 'wake.api.inst1.luma.internal.' },
  ])('builds $expected', ({ build, expected }) => {
    expect(build()).toBe(expected);
  });

  it.each([
    { case: 'instance id with a dot', build: () => dnsZone('a.b') },
    { case: 'empty service', build: () => serviceRecordName('inst1', '') },
    { case: 'service with underscore', build: () => serviceRecordName('inst1', 'my_api') },
    { case: 'service ending in hyphen', build: () => serviceRecordName('inst1', 'api-') },
    { case: 'service of 64 characters', build: () => serviceRecordName('inst1', 'a'.repeat(64)) },
    { case: 'replica id wake', build: () => replicaHostName('inst1', 'api', 'wake') },
  ])('rejects $case', ({ build }) => {
    expect(build).toThrow(expect.objectContaining({ code: 'invalid_input' }));
  });

  it.each([
    {
      address: '3f2a9c1b7d4e.api.inst1.luma.internal.:8080',
      expected: { kind: 'replica', service: 'api', replicaLabel: '3f2a9c1b7d4e', port: 8080 },
    },
    {
      address: '3F2A9C1B7D4E.api.inst1.luma.internal:8080',
      expected: { kind: 'replica', service: 'api', replicaLabel: '3f2a9c1b7d4e', port: 8080 },
    },
    { address: 'wake.api.inst1.luma.internal.:7000', expected: { kind: 'wake', service: 'api', port: 7000 } },
    { address: '172.18.0.5:8080', expected: undefined },
    { address: '3f2a9c1b7d4e.api.inst2.luma.internal.:8080', expected: undefined },
    { address: 'x.3f2a9c1b7d4e.api.inst1.luma.internal.:8080', expected: undefined },
    { address: '3f2a9c1b7d4e.api.inst1.luma.internal.', expected: undefined },
    { address: '3f2a9c1b7d4e.api.inst1.luma.internal.:0', expected: undefined },
  ])('parses upstream $address', ({ address, expected }) => {
    expect(parseUpstreamAddress('inst1', address)).toEqual(expected);
  });
});
