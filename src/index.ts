/**
 * mdns-ambassador as a library: the ambassador itself (what `ambassador run` starts), and the
 * mDNS engine under it for programs that only publish or browse. README, "Embedding".
 *
 * The ambassador takes a Config made by buildConfig() from the same options as the command line
 * (camel case: `{ advertise: ['redis=6379'], admin: '9901' }`); the engine takes its own options.
 * Nothing here sets V8's heap (the executable does, cli/heap.ts): an application
 * keeps its own.
 */
export { Ambassador } from './ambassador/ambassador.js';
export { buildConfig, ConfigError, type Config, type RawOptions } from './config/config.js';
export { createLogger, type Logger, type LogFormat, type LogLevel } from './logging/logger.js';
export { HostNetwork, type LinkInfo, type LinkDiff, type NetworkVerdict } from './base/host-network.js';
export {
  MdnsEngine, type MdnsEngineOptions, type PublishOptions, type NetworkState, type InterfaceChange,
} from './mdns/engine.js';
export { InterfaceSelection, InterfaceError } from './mdns/link/interfaces.js';
export type { ServiceBrowser, TypeBrowser, ServiceInstance } from './mdns/browse/browser.js';
export type { Registration, RegistrationState } from './mdns/publish/owned.js';
