// A mini-program's use of the API, typed by the client openapi-typescript generates from /openapi.json
// (tests/test_ts_client.py writes ./schema.d.ts next to this file and runs `tsc --noEmit --strict`).
// Each `@ts-expect-error` line is a mistake the generated types must refuse: tsc fails if one compiles.
import type { components, paths } from "./schema";

type Schemas = components["schemas"];
type ApiError = Schemas["ErrorBody"];

type NearbyQuery = paths["/v1/stations/nearby"]["get"]["parameters"]["query"];
type Nearby = paths["/v1/stations/nearby"]["get"]["responses"][200]["content"]["application/json"];
type RouteQuery = paths["/v1/route"]["get"]["parameters"]["query"];
type Route = paths["/v1/route"]["get"]["responses"][200]["content"]["application/json"];
type MatrixBody = paths["/v1/matrix"]["post"]["requestBody"]["content"]["application/json"];
type Matrix = paths["/v1/matrix"]["post"]["responses"][200]["content"]["application/json"];
type PricesPath = paths["/v1/stations/{station_id}/prices"]["put"];
type PricesBody = PricesPath["requestBody"]["content"]["application/json"];
type PricesResult = PricesPath["responses"][200]["content"]["application/json"];
type PromotionPath = paths["/v1/stations/{station_id}/promotions"]["post"];
type PromotionBody = PromotionPath["requestBody"]["content"]["application/json"];
type Promotion = PromotionPath["responses"][201]["content"]["application/json"];

export class FuelApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(`${body.error.code}: ${body.error.message}`);
  }
  /** The parameter or body field at fault (422), if any. */
  get param(): string | null {
    return this.body.error.param ?? null;
  }
}

function search(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return q.toString();
}

async function call<T>(url: string, init?: RequestInit): Promise<T> {
  const r = await fetch(url, init);
  if (!r.ok) throw new FuelApiError(r.status, (await r.json()) as ApiError);
  return (await r.json()) as T;
}

// ---- nearby: the cheapest 95# around the driver, in GCJ-02 (what wx.getLocation gives) ---------------
export async function cheapest95(base: string, lat: number, lon: number): Promise<{ id: number; price: number } | null> {
  const q: NearbyQuery = { lat, lon, grade: "95", sort: "effective_price", radius_m: 5000, limit: 10, coord: "gcj02", member: true };
  const body = await call<Nearby>(`${base}/v1/stations/nearby?${search(q)}`);
  for (const s of body.results) {
    const p = s.grades["95"]?.effective_price;
    if (p != null) return { id: s.id, price: p };
  }
  return null;
}

export function worthTheDetour(body: Nearby): number[] {
  // total_cost answers carry a cost per station; unreachable ones have a null total
  return body.results.filter((s) => s.cost?.worth_it === true).map((s) => s.id);
}

// @ts-expect-error lat is a number, not a string
export const badLat: NearbyQuery = { lat: "26.87", lon: 100.23 };
// @ts-expect-error 93 is not a fuel grade
export const badGrade: NearbyQuery = { lat: 26.87, lon: 100.23, grade: "93" };
// @ts-expect-error lon is required
export const noLon: NearbyQuery = { lat: 26.87 };
// @ts-expect-error sorts are a closed list
export const badSort: NearbyQuery = { lat: 26.87, lon: 100.23, sort: "cheapest" };

// ---- route: the fastest drive under traffic, with Chinese turn-by-turn text -------------------------
export async function drive(base: string, from: [number, number], to: [number, number]): Promise<{ seconds: number; steps: string[] }> {
  const q: RouteQuery = { from: from.join(","), to: to.join(","), alternatives: 1, coord: "gcj02" };
  const r = await call<Route>(`${base}/v1/route?${search(q)}`);
  return { seconds: r.duration_s, steps: r.steps.map((s) => s.text_zh) }; // both formats carry the steps
}

// The line to draw: GeoJSON unless `geometries` left it out, else the WeChat polyline's points.
export async function routeLine(base: string, from: [number, number], to: [number, number]): Promise<[number, number][]> {
  const q: RouteQuery = { from: from.join(","), to: to.join(","), geometries: "geojson,segments" };
  const r = await call<Route>(`${base}/v1/route?${search(q)}`);
  if ("polyline" in r) return r.polyline.flatMap((l) => l.points.map((p): [number, number] => [p.longitude, p.latitude]));
  return (r.geometry?.coordinates ?? []).map((c): [number, number] => [c[0] ?? 0, c[1] ?? 0]);
}

// @ts-expect-error the GeoJSON line may be left out (geometries=polyline6): read it with `?.`
export const lineOf = (r: Schemas["RoutePublic"]) => r.geometry.coordinates;

// @ts-expect-error format is json or wechat
export const badFormat: RouteQuery = { from: "26.87,100.23", to: "26.88,100.24", format: "xml" };

// ---- matrix: drive times from the driver to a few stations ---------------------------------------------
export async function driveTimes(base: string, me: [number, number], stations: [number, number][]): Promise<(number | null)[]> {
  const body: MatrixBody = { sources: [me], targets: stations, depart_at: "2026-11-28T08:30:00+08:00" };
  const m = await call<Matrix>(`${base}/v1/matrix`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return m.durations_s[0] ?? [];
}

// ---- manager API: set prices (If-Match), add a promotion ------------------------------------------------
export async function setPrice(base: string, key: string, station: number, etag: string, grade: "92" | "95", yuan: string): Promise<number> {
  const body: PricesBody = { prices: [{ grade, price_cny: yuan }] };
  const r = await call<PricesResult>(`${base}/v1/stations/${station}/prices`, {
    method: "PUT",
    headers: { "Content-Type": "application/json", "X-API-Key": key, "If-Match": etag },
    body: JSON.stringify(body),
  });
  return r.version;
}

export async function weekendOffer(base: string, key: string, station: number): Promise<Promotion> {
  const body: PromotionBody = {
    title: "周末92号每升优惠0.30元",
    grades: ["92"],
    kind: "cny_off_per_litre",
    value: "0.30",
    days_of_week: [6, 7],
    valid_from: "2026-12-01T00:00:00+08:00",
    source_ref: "weekend-92",
  };
  const p = await call<Promotion>(`${base}/v1/stations/${station}/promotions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-API-Key": key },
    body: JSON.stringify(body),
  });
  return p;
}

// @ts-expect-error a promotion's kind is a closed list
export const badKind: PromotionBody = { kind: "free_fuel", value: "1", valid_from: "2026-12-01T00:00:00+08:00" };
