/**
 * Express 4 and 5 against the route-template acceptance every supported framework passes
 * (test/support/framework-apps.ts): one series per route under every mount prefix, one
 * `__unmatched__` for unrouted requests, CJS and ESM, traced and metrics-only.
 */
import { describeRouteTemplates } from '../support/framework-apps';

for (const major of [4, 5]) {
  describeRouteTemplates({
    title: `Express ${major}`,
    app: `express${major}`,
    usersTemplate: '/api/v1/users/:id',
    laterPath: '/api/v1/teams/platform/members',
    laterTemplate: '/api/v1/teams/:team/members',
  });
}
