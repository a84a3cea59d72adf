import jwt from "jsonwebtoken";

export type Role = "customer" | "admin";

export interface TokenClaims {
	sub: string;
	role: Role;
	name?: string;
	email?: string;
}

/** Signs an HS256 token as the gateway expects it (SPEC section 3). */
export function signToken(claims: TokenClaims, secret: string, expiresInSeconds: number): string {
	return jwt.sign({ ...claims }, secret, { algorithm: "HS256", expiresIn: expiresInSeconds });
}
