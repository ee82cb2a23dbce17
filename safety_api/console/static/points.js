// Thousands of facility points drawn on canvas tiles: smooth with Gwanak's 5,000+ cameras.
// Points are projected once per zoom level; each 256 px tile draws only the points that fall on it.
/* global L */

function radiusAt(zoom) {
  if (zoom <= 13) return 1.4;
  if (zoom <= 15) return 2.2;
  return zoom <= 17 ? 3.2 : 4.5;
}

export const PointLayer = L.GridLayer.extend({
  options: { pane: "facilities", color: "#5fa8d3", updateWhenZooming: false },

  /** data: {ids: [...], coords: [lon0, lat0, lon1, lat1, ...]} as GET /api/v1/layers/facilities answers. */
  initialize(data, options) {
    L.setOptions(this, options);
    this.ids = data.ids;
    this.coords = data.coords;
    this.projected = new Map(); // zoom -> Float64Array of pixel x, y
  },

  pixels(zoom) {
    let xy = this.projected.get(zoom);
    if (!xy) {
      xy = new Float64Array(this.coords.length);
      for (let i = 0; i < this.coords.length; i += 2) {
        const p = this._map.project([this.coords[i + 1], this.coords[i]], zoom);
        xy[i] = p.x;
        xy[i + 1] = p.y;
      }
      this.projected.set(zoom, xy);
    }
    return xy;
  },

  createTile(coords) {
    const size = this.getTileSize();
    const ratio = window.devicePixelRatio || 1;
    const tile = document.createElement("canvas");
    tile.width = size.x * ratio;
    tile.height = size.y * ratio;
    const ctx = tile.getContext("2d");
    ctx.scale(ratio, ratio);
    const xy = this.pixels(coords.z);
    const r = radiusAt(coords.z);
    const x0 = coords.x * size.x;
    const y0 = coords.y * size.y;
    ctx.beginPath();
    for (let i = 0; i < xy.length; i += 2) {
      const x = xy[i] - x0;
      const y = xy[i + 1] - y0;
      if (x < -r || y < -r || x > size.x + r || y > size.y + r) continue;
      ctx.moveTo(x + r, y);
      ctx.arc(x, y, r, 0, Math.PI * 2);
    }
    ctx.fillStyle = this.options.color;
    ctx.fill();
    return tile;
  },

  /** The index of the point nearest a map position within maxPx screen pixels, or -1. */
  nearest(latlng, maxPx = 8) {
    const zoom = this._map.getZoom();
    const xy = this.pixels(zoom);
    const p = this._map.project(latlng, zoom);
    let best = -1;
    let bestD = maxPx * maxPx;
    for (let i = 0; i < xy.length; i += 2) {
      const d = (xy[i] - p.x) ** 2 + (xy[i + 1] - p.y) ** 2;
      if (d <= bestD) { best = i / 2; bestD = d; }
    }
    return best;
  },

  latLngAt(index) {
    return L.latLng(this.coords[index * 2 + 1], this.coords[index * 2]);
  },
});
