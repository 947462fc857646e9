/**
 * Koa 2 (@koa/router 13) and Koa 3 (@koa/router 15) against the route-template acceptance every
 * supported framework passes (test/support/framework-apps.ts): the template is the router's
 * `ctx._matchedRoute` with the parent router's prefix and the nested router's mount path, one
 * `__unmatched__` for requests no route matched, CJS and ESM, traced and metrics-only.
 */
import { describeRouteTemplates } from '../support/framework-apps';

for (const major of [2, 3]) {
  describeRouteTemplates({
    title: `Koa ${major} + @koa/router`,
    app: `koa${major}`,
    usersTemplate: '/api/v1/users/:id',
    laterPath: '/api/v1/teams/platform/members',
    laterTemplate: '/api/v1/teams/:team/members',
  });
}

// A router inside an app mounted with koa-mount sees the path without the mount path; the
// template gets it back.
describeRouteTemplates({
  title: 'Koa 3 + @koa/router under koa-mount',
  app: 'koa3',
  files: ['mount.cjs', 'mount.mjs'],
  usersTemplate: '/api/v1/users/:id',
  laterPath: '/api/v1/teams/platform/members',
  laterTemplate: '/api/v1/teams/:team/members',
});
