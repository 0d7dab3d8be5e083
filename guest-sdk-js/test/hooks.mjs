// Module resolution hooks (see register.mjs): `wasmos:*` imports become fake-host.mjs.
const fake = new URL('./fake-host.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('wasmos:framework/')) return { url: fake, shortCircuit: true };
  return next(specifier, context);
}
