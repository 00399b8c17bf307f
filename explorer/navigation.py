"""The app's pages, in the order of its navigation: (file in explorer/pages/, title, icon). One home:
app.py draws the navigation from it, the first visit's orientation (explorer.intro) names the pages from it."""

PAGES = (("sample", "Sample", ":material/grid_view:"), ("traverse", "Traverse", ":material/tune:"),
         ("interpolate", "Interpolate", ":material/linear_scale:"),
         ("latent_map", "Latent map", ":material/scatter_plot:"), ("train", "Train", ":material/model_training:"),
         ("analyze", "Analyze", ":material/analytics:"),
         ("classes", "Class & style", ":material/category:"), ("augment", "Augment", ":material/auto_awesome:"))
