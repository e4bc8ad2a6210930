/**
 * Syntax check of Docker image references, following the grammar of the distribution/reference
 * Go package that the Docker engine uses:
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component [ "/" path-component ]*
 *   domain    := host [ ":" port ]        (the first component, if it contains "." or ":",
 *                                           is "localhost", or has upper-case letters)
 *   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := "sha256:" 64 hex | "sha512:" 128 hex
 *
 * The name is at most 255 characters. Only the syntax is checked; whether the image exists is
 * known when a replica starts.
 */

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const MAX_NAME_LENGTH = 255;

/** Returns what is wrong with an image reference, or undefined when its syntax is valid. */
export function findImageReferenceProblem(reference: string): string | undefined {
  if (reference === '') return 'must not be empty';
  if (/[\s\u0000-\u001f]/.test(reference)) return 'must not contain whitespace';

  let rest = reference;
  const at = rest.indexOf('@');
  if (at !== -1) {
    const digest = rest.slice(at + 1);
    if (!DIGEST.test(digest)) return `invalid digest ${JSON.stringify(digest)}; expected sha256: and 64 lower-case hex digits`;
    rest = rest.slice(0, at);
  }

  // A ":" after the last "/" starts the tag; a ":" before it belongs to a registry port.
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  if (colon !== -1) {
    const tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) return `invalid tag ${JSON.stringify(tag)}; a tag has 1-128 letters, digits, "_", "." or "-" and does not start with "." or "-"`;
    rest = rest.slice(0, colon);
  }

  if (rest.length > MAX_NAME_LENGTH) return `repository name must be at most ${MAX_NAME_LENGTH} characters`;
  const components = rest.split('/');
  const first = components[0] ?? '';
  if (components.length > 1 && isDomain(first)) {
    const problem = findDomainProblem(first);
    if (problem !== undefined) return problem;
    components.shift();
  }

  for (const component of components) {
    if (!PATH_COMPONENT.test(component)) {
      return (
        `invalid repository path component ${JSON.stringify(component)}; use lower-case letters and digits, ` +
        'separated by ".", "_", "__" or "-", for example registry.example.com:5000/team/app:1.2'
      );
    }
  }
  return undefined;
}

function isDomain(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component !== component.toLowerCase();
}

function findDomainProblem(domain: string): string | undefined {
  let host = domain;
  let port: string | undefined;
  const ipv6 = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(domain);
  if (ipv6 !== null) {
    host = '';
    port = ipv6[2];
  } else {
    const colon = domain.lastIndexOf(':');
    if (colon !== -1) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (!host.split('.').every((component) => DOMAIN_COMPONENT.test(component))) {
      return `invalid registry host ${JSON.stringify(host)}`;
    }
  }
  if (port !== undefined && !/^\d+$/.test(port)) return `invalid registry port ${JSON.stringify(port)}`;
  return undefined;
}
