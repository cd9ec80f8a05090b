-- Single sign-on: a user provisioned by the OpenID provider carries the provider's subject
-- (`ISSUER#SUB`); such a user has no password sign-in, and only that subject signs in as it.

ALTER TABLE users ADD COLUMN sso_subject TEXT;
