/**
 * hapi 21 against the route-template acceptance every supported framework passes
 * (test/support/framework-apps.ts): the template is hapi's own `request.route.path` (`{id}`
 * syntax) with the prefixes of nested plugins, one `__unmatched__` for requests hapi routed to its
 * not-found route, CJS and ESM, traced and metrics-only.
 */
import { describeRouteTemplates } from '../support/framework-apps';

describeRouteTemplates({
  title: 'hapi 21',
  app: 'hapi21',
  usersTemplate: '/api/v1/users/{id}',
  laterPath: '/api/v1/teams/platform/members',
  laterTemplate: '/api/v1/teams/{team}/members',
});
