/**
 * Fastify 4 and 5 against the route-template acceptance every supported framework passes
 * (test/support/framework-apps.ts): the template with every register() prefix (a plugin under
 * /api/v1 with one nested under /users), one `__unmatched__` for requests Fastify gave its
 * not-found handler, CJS and ESM, traced and metrics-only.
 */
import { describeRouteTemplates } from '../support/framework-apps';

for (const major of [4, 5]) {
  describeRouteTemplates({
    title: `Fastify ${major}`,
    app: `fastify${major}`,
    usersTemplate: '/api/v1/users/:id',
    laterPath: '/api/v1/teams/platform/members',
    laterTemplate: '/api/v1/teams/:team/members',
  });
}
