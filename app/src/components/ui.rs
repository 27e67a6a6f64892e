//! Tailwind classes shared by the dashboard's controls.

pub const INPUT: &str = "mt-1 block w-full rounded-md border border-slate-300 bg-white px-3 py-2 text-slate-900 shadow-sm focus:border-emerald-600 focus:outline-none focus:ring-2 focus:ring-emerald-200 aria-[invalid=true]:border-rose-500";
pub const LABEL: &str = "block text-sm font-medium text-slate-700";
pub const PRIMARY: &str = "rounded-md bg-emerald-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-emerald-800 disabled:cursor-not-allowed disabled:opacity-50";
pub const SECONDARY: &str = "rounded-md border border-slate-300 bg-white px-4 py-2 text-sm font-semibold text-slate-700 hover:bg-slate-50 disabled:opacity-50";
pub const DANGER: &str = "rounded-md bg-rose-700 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-rose-800 disabled:cursor-not-allowed disabled:opacity-50";
pub const CARD: &str = "rounded-lg border border-slate-200 bg-white p-5 shadow-sm";
