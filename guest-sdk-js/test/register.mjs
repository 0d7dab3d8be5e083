// Lets the SDK run under Node for its unit tests: the component's imports
// (`wasmos:framework/driver@0.1.0`, `.../executor-driver@0.1.0`) resolve to the recording
// fakes in fake-host.mjs instead of a wasmos host.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
