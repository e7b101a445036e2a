import type * as DnsPacket from 'dns-packet';
import { requireCommonJs } from '../../base/commonjs.js';

const dns = requireCommonJs('dns-packet') as typeof DnsPacket;

/** Parts of dns-packet's public API that @types/dns-packet does not declare. */
interface Codec {
  encode(data: unknown): Buffer;
  encodingLength(data: unknown): number;
}
const lib = dns as unknown as {
  record(type: string): Codec;
  name: Codec;
  answer: Codec;
};

export const rdataCodec = (type: string): Codec => lib.record(type);
export const nameLength = (name: string): number => lib.name.encodingLength(name);
export const answerLength = (r: unknown): number => lib.answer.encodingLength(r);
