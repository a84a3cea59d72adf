/** List endpoints page as SPEC section 2 says: `?page=1&pageSize=20` (max 100). */
export const MAX_PAGE_SIZE = 100;
/** Beyond this a page number is a mistake (or a probe): it is refused, not turned into an SQL offset that overflows. */
export const MAX_PAGE = 1_000_000;

/** fastest-validator rules for the paging parameters (query strings are converted). */
export const pageParams = {
	page: { type: "number", integer: true, min: 1, max: MAX_PAGE, default: 1, convert: true },
	pageSize: { type: "number", integer: true, min: 1, max: MAX_PAGE_SIZE, default: 20, convert: true },
} as const;

export interface Page<T> {
	rows: T[];
	total: number;
	page: number;
	pageSize: number;
	totalPages: number;
}

export function pageOf<T>(rows: T[], total: number, page: number, pageSize: number): Page<T> {
	return { rows, total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
}

export function offsetOf(page: number, pageSize: number): number {
	return (page - 1) * pageSize;
}
