/**
 * NestJS 10 and 11, on the Express and the Fastify adapter, against the route-template
 * acceptance every supported framework passes (test/support/framework-apps.ts). The template
 * carries the global prefix and the URI version (`/api/v1/...`); NestJS's own 404 (a
 * NotFoundException its exception filter answers) is `__unmatched__`. One fixture per major
 * holds both adapters, each with a CJS and an ESM entry.
 */
import { describeRouteTemplates } from '../support/framework-apps';

for (const major of [10, 11]) {
  for (const [platform, adapter] of [
    ['express', 'Express'],
    ['fastify', 'Fastify'],
  ] as const) {
    describeRouteTemplates({
      title: `NestJS ${major}, ${adapter} adapter`,
      app: `nest${major}`,
      files: [`${platform}.cjs`, `${platform}.mjs`],
      usersTemplate: '/api/v1/users/:id',
      laterPath: '/api/v1/teams/platform/members',
      laterTemplate: '/api/v1/teams/:team/members',
    });
  }
}
